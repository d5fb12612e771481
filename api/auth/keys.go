package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// minRSABits is the smallest RSA modulus accepted (RFC 7518 section 3.3).
const minRSABits = 2048

// publicKey is a key that verifies signatures, with what restricts its use.
type publicKey struct {
	kid string                 // key id; "" for PEM keys
	alg jwa.SignatureAlgorithm // the only algorithm allowed when the JWK names one; "" otherwise
	raw any                    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// fits reports whether k may verify a signature made with alg.
func (k publicKey) fits(alg jwa.SignatureAlgorithm) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch raw := k.raw.(type) {
	case *rsa.PublicKey:
		return rsaAlg(alg)
	case *ecdsa.PublicKey:
		return ecdsaAlgFor(raw.Curve) == alg
	case ed25519.PublicKey:
		return alg == jwa.EdDSA
	}
	return false
}

// hmacAlg reports whether alg is an HMAC algorithm.
func hmacAlg(alg jwa.SignatureAlgorithm) bool {
	return alg == jwa.HS256 || alg == jwa.HS384 || alg == jwa.HS512
}

// rsaAlg reports whether alg is an RSA algorithm.
func rsaAlg(alg jwa.SignatureAlgorithm) bool {
	switch alg {
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		return true
	}
	return false
}

// ecdsaAlgFor is the one algorithm a key on curve may verify, "" for other curves.
func ecdsaAlgFor(curve elliptic.Curve) jwa.SignatureAlgorithm {
	switch curve {
	case elliptic.P256():
		return jwa.ES256
	case elliptic.P384():
		return jwa.ES384
	case elliptic.P521():
		return jwa.ES512
	}
	return ""
}

// acceptedAlg reports whether herald verifies tokens signed with alg at all.
func acceptedAlg(alg jwa.SignatureAlgorithm) bool {
	switch alg {
	case jwa.ES256, jwa.ES384, jwa.ES512, jwa.EdDSA:
		return true
	}
	return hmacAlg(alg) || rsaAlg(alg)
}

// checkPublicKey returns raw as a supported verification key, or says why it is not one.
func checkPublicKey(raw any) (any, error) {
	switch k := raw.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		if ecdsaAlgFor(k.Curve) == "" {
			return nil, fmt.Errorf("ECDSA key on unsupported curve %s", k.Curve.Params().Name)
		}
		return k, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key of %d bytes", len(k))
		}
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", raw)
}

// loadPublicKeyFiles reads every PEM file in paths.
func loadPublicKeyFiles(paths []string) ([]publicKey, error) {
	var keys []publicKey
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("auth: public key file: %w", err)
		}
		raws, err := parsePEMKeys(data)
		if err != nil {
			return nil, fmt.Errorf("auth: public key file %s: %w", path, err)
		}
		for _, raw := range raws {
			keys = append(keys, publicKey{raw: raw})
		}
	}
	return keys, nil
}

// parsePEMKeys returns the public keys of every PEM block in data: PUBLIC KEY (PKIX),
// RSA PUBLIC KEY (PKCS #1) and CERTIFICATE blocks. Text outside the blocks is ignored.
func parsePEMKeys(data []byte) ([]any, error) {
	var keys []any
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			if bytes.Contains(data, []byte("-----BEGIN")) {
				return nil, fmt.Errorf("PEM block %d is malformed", n)
			}
			break
		}
		raw, err := parsePEMBlock(block)
		if err == nil {
			raw, err = checkPublicKey(raw)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		keys = append(keys, raw)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found")
	}
	return keys, nil
}

// parsePEMBlock decodes one PEM block into a public key.
func parsePEMBlock(block *pem.Block) (any, error) {
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, errors.New("a private key: configure its public key instead")
	}
	return nil, errors.New("not a public key or certificate")
}
