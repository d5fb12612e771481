// Package auth verifies the credentials that clients and backends present to herald and holds
// the permission model: which channels a credential may subscribe to and publish to.
//
// A credential is either a JWT or a static API key. JWTs are checked with an HMAC secret, PEM
// public keys (RSA, ECDSA, Ed25519) or the keys of a JWKS URL that is refreshed in the background.
// Permissions live in one claim:
//
//	"herald": {"subscribe": ["orders:42", "chat:*"], "publish": ["chat:*"]}
//
// whose entries are glob patterns (see [Match]). API keys may do everything.
//
// # Invariants
//
//   - A key is only ever used with the algorithms of its own type: HS* only with the HMAC secret,
//     RS*/PS* only with RSA keys, ES256/ES384/ES512 only with ECDSA keys on P-256/P-384/P-521,
//     EdDSA only with Ed25519 keys. "none" and every other algorithm are refused.
//   - Keys named by the token itself (the jwk, jku, x5u and x5c headers) are never used, and a
//     token carrying any of these headers is refused.
//   - The signature is checked before any claim is read.
//   - No error message or log line carries the token or API key text.
//   - API keys are compared in constant time against every configured key.
//   - Verify never waits on the network, except for one rate-limited JWKS fetch when a token names
//     a key id the verifier does not know yet.
package auth
