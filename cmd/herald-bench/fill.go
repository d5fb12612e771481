package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// fillChannels publishes msgs messages of size bytes of data to each channel through the batch
// endpoint, batch messages per request, and returns how many were stored. The data is a JSON
// string of size bytes, quotes included.
func fillChannels(ctx context.Context, base, token string, channels []string, msgs, size, batch int) (int, error) {
	data := `"` + strings.Repeat("x", size-2) + `"`
	client := &http.Client{}
	stored := 0
	for _, ch := range channels {
		for done := 0; done < msgs; {
			n := min(batch, msgs-done)
			ok, err := postBatch(ctx, client, base, token, batchBody(ch, data, n))
			stored += ok
			if err != nil {
				return stored, err
			}
			if ok != n {
				return stored, fmt.Errorf("fill %s: %d of %d messages stored", ch, ok, n)
			}
			done += n
		}
	}
	return stored, nil
}

// batchBody is a POST /v1/messages body of n messages with the same data to one channel.
func batchBody(channel, data string, n int) []byte {
	var b bytes.Buffer
	b.Grow(n * (len(data) + len(channel) + 32))
	b.WriteString(`{"messages":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"channel":`)
		b.WriteString(strconv.Quote(channel))
		b.WriteString(`,"data":`)
		b.WriteString(data)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// postBatch sends one batch and returns how many of its messages were stored.
func postBatch(ctx context.Context, client *http.Client, base, token string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusMultiStatus {
		return 0, fmt.Errorf("batch publish: status %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	var ans struct {
		Results []struct {
			ID string `json:"id"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return 0, fmt.Errorf("batch publish answer: %w", err)
	}
	ok := 0
	for _, r := range ans.Results {
		if r.ID != "" {
			ok++
		}
	}
	return ok, nil
}

// getRequest is a GET request for path with the credential, as raw bytes to write on a socket.
func getRequest(host, token, path string) []byte {
	b := make([]byte, 0, 256+len(path)+len(token))
	b = append(b, "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	b = appendAuth(b, token)
	return append(b, "\r\n"...)
}
