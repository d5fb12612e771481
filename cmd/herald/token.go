package main

import (
	"fmt"
	"io"
	"time"

	"github.com/herald-gateway/herald/api/auth"
)

func token(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("herald token", "herald token: mint an HS256 JWT for herald (for trying things and for scripts).\n\n"+
		"Example: herald token --secret \"$HERALD_JWT_SECRET\" --subscribe 'orders:*' --ttl 1h", stderr)
	var secret, subject, issuer, audience string
	var subs, pubs listValue
	var ttl time.Duration
	fs.StringVar(&secret, "secret", "", "HMAC secret the gateway verifies with (its --jwt-secret)")
	fs.bindEnv("secret", "HERALD_JWT_SECRET")
	fs.StringVar(&subject, "sub", "herald-cli", "subject (sub claim)")
	fs.Var(&subs, "subscribe", "channel pattern the token may subscribe to ('*' matches any run); repeatable")
	fs.Var(&pubs, "publish", "channel pattern the token may publish to; repeatable")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime (0: the token never expires)")
	fs.StringVar(&issuer, "issuer", "", "iss claim")
	fs.StringVar(&audience, "audience", "", "aud claim")
	if err := fs.parse(args); err != nil {
		return err
	}
	if secret == "" {
		fmt.Fprintln(stderr, "herald token: --secret (or HERALD_JWT_SECRET) is required")
		return errUsage
	}
	if len(subs.items) == 0 && len(pubs.items) == 0 {
		fmt.Fprintln(stderr, "herald token: give at least one --subscribe or --publish pattern")
		return errUsage
	}
	tok, err := auth.MintHMAC([]byte(secret), auth.MintClaims{
		Subject: subject, Subscribe: subs.items, Publish: pubs.items, TTL: ttl, Issuer: issuer, Audience: audience,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
