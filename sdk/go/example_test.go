package herald_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	herald "github.com/herald-gateway/herald/sdk/go"
)

// A backend publishes with an API key (or a token with publish rights). A publish that fails
// on the way is retried with the same Idempotency-Key, so it is stored once.
func ExamplePublisher_Publish() {
	pub, err := herald.NewPublisher("http://localhost:8080", herald.WithAPIKey(os.Getenv("HERALD_API_KEY")))
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := pub.Publish(ctx, "orders:42", map[string]any{"state": "shipped"}, herald.WithEvent("status"))
	var problem *herald.ProblemError
	switch {
	case errors.As(err, &problem) && problem.Type == "forbidden":
		log.Fatalf("the key may not publish there: %s", problem.Detail)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("stored as", id)
}

// A subscriber follows channels over one WebSocket. It reconnects and resumes by itself; the gap
// callback says when it could not be given everything it missed.
func ExampleClient_Subscribe() {
	c, err := herald.NewClient("http://localhost:8080",
		herald.WithTokenFunc(func(ctx context.Context) (string, error) {
			return os.Getenv("HERALD_TOKEN"), nil // fetch or mint a fresh token here
		}),
		herald.WithStateHandler(func(s herald.StateChange) {
			if s.State == herald.Disconnected {
				log.Printf("disconnected (%v), retrying in %v", s.Err, s.RetryIn)
			}
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Subscribe("orders:42", func(m herald.Message) {
		var order struct {
			State string `json:"state"`
		}
		if err := m.Decode(&order); err == nil {
			fmt.Println(m.ID, m.Event, order.State)
		}
	}, herald.OnGap(func(channel string, reason herald.GapReason) {
		log.Printf("%s: messages were lost (%s): reload its state", channel, reason)
	}))
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()
}

// Server-Sent Events instead of a WebSocket, for networks that do not pass upgrades.
func ExampleWithTransport() {
	c, err := herald.NewClient("https://push.example.com",
		herald.WithToken(os.Getenv("HERALD_TOKEN")), herald.WithTransport(herald.SSE))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Subscribe("chat:lobby", func(m herald.Message) { fmt.Println(string(m.Data)) })
	_, _ = c.Subscribe("orders:42", func(m herald.Message) { fmt.Println(string(m.Data)) })
	time.Sleep(time.Minute)
}

// Reading a channel's whole retained history, a page at a time.
func ExamplePublisher_HistoryPager() {
	pub, err := herald.NewPublisher("http://localhost:8080", herald.WithAPIKey(os.Getenv("HERALD_API_KEY")))
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	pg := pub.HistoryPager("orders:42", "0", 500)
	for pg.Next(ctx) {
		for _, m := range pg.Page().Messages {
			fmt.Println(m.ID, string(m.Data))
		}
	}
	if err := pg.Err(); err != nil {
		log.Fatal(err)
	}
	if !pg.Complete() {
		fmt.Println("older messages were trimmed")
	}
}
