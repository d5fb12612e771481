package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/herald-gateway/herald/api/auth"
)

func ExampleMatch() {
	fmt.Println(auth.Match("chat:*", "chat:lobby"))
	fmt.Println(auth.Match("chat:*", "orders:42"))
	fmt.Println(auth.Match("users/*/inbox", "users/7/inbox"))
	fmt.Println(auth.Match("*", "anything:at/all"))
	// Output:
	// true
	// false
	// true
	// true
}

func ExampleVerifier_Verify() {
	secret := []byte("an HMAC secret of at least 32 bytes!")
	v, err := auth.New(context.Background(), auth.Config{HMACSecret: secret})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	token, err := auth.MintHMAC(secret, auth.MintClaims{
		Subject:   "user-7",
		Subscribe: []string{"orders:7", "chat:*"},
		TTL:       time.Hour,
	})
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(context.Background(), token)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.CanSubscribe("chat:lobby"), claims.CanPublish("chat:lobby"))

	expired, _ := auth.MintHMAC(secret, auth.MintClaims{Subject: "user-7", TTL: -time.Hour})
	_, err = v.Verify(context.Background(), expired)
	fmt.Println(errors.Is(err, auth.ErrExpired))
	// Output:
	// user-7 true false
	// true
}

func ExampleFromRequest() {
	r := httptest.NewRequest("GET", "/v1/sse?channel=orders:7&access_token=abc.def.ghi", nil)
	fmt.Println(auth.FromRequest(r, true))
	fmt.Println(auth.RedactQuery(r.URL.RawQuery))
	// Output:
	// abc.def.ghi
	// channel=orders:7&access_token=REDACTED
}
