package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/broker"
)

// batchRequest is the body of POST /v1/messages: either Messages, or Channels with one Data
// (and Event) sent to each of them.
type batchRequest struct {
	Messages []batchMessage  `json:"messages"`
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
	Event    string          `json:"event"`
}

// batchMessage is one message of a batch.
type batchMessage struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Event   string          `json:"event"`
}

// batchResult is the outcome of one message of a batch: its id, or the problem that kept it
// from being stored.
type batchResult struct {
	Channel  string           `json:"channel"`
	ID       string           `json:"id,omitempty"`
	Replayed bool             `json:"replayed,omitempty"`
	Error    *problem.Details `json:"error,omitempty"`
}

// batchResponse answers POST /v1/messages: one result per message, in request order.
type batchResponse struct {
	Results []batchResult `json:"results"`
}

// publishBatch is POST /v1/messages: store several messages at once. Problems with the request
// as a whole (auth, body, shape, size) answer a problem document; problems with one message
// (its channel, data or event, permission, the store) go into that message's result. The answer
// is 201 when every message was stored and 207 otherwise. An Idempotency-Key on the request
// gives message i the key "<key>#<i>", so a retry of the same batch stores only what is missing
// (keys are the credential's own: see auth.Claims.IdempotencyKey).
//
// Under a publish rate limit each message that passed its checks costs a token, and the batch
// passes whole or not at all (a 429 for the whole request; see admission.PublishLimiter.Take).
// A batch is never cut at the limit: a client could not tell which part to resend, and one
// resent with its Idempotency-Key would spend its tokens on the part already stored.
func (s *server) publishBatch(c echo.Context) (err error) {
	defer s.countPublishError(&err)
	claims, err := s.authenticate(c)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c.Request().Header)
	if err != nil {
		return err
	}
	var body batchRequest
	if err := s.decodeBody(c, int64(s.maxBatch)*int64(s.maxData+envelopeRoom), &body); err != nil {
		return err
	}
	items, err := s.batchItems(&body)
	if err != nil {
		return err
	}
	results, p := s.storeBatch(c, claims, key, items)
	if p != nil {
		return p
	}

	status := http.StatusCreated
	for _, r := range results {
		if r.Error == nil {
			continue
		}
		status = http.StatusMultiStatus
		s.metrics.PublishErrors.WithLabelValues(publishErrorReason(r.Error)).Inc()
		if r.Error.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", "1")
		}
	}
	return writeJSON(c, status, batchResponse{Results: results})
}

// batchItems checks the shape of a batch and lists its messages.
func (s *server) batchItems(b *batchRequest) ([]batchMessage, error) {
	var items []batchMessage
	switch {
	case b.Messages != nil && (b.Channels != nil || b.Data != nil || b.Event != ""):
		return nil, badRequest(typeInvalidRequest, `send either "messages", or "channels" with "data"`)
	case b.Messages != nil:
		items = b.Messages
	case b.Channels != nil:
		items = make([]batchMessage, len(b.Channels))
		for i, ch := range b.Channels {
			items[i] = batchMessage{Channel: ch, Data: b.Data, Event: b.Event}
		}
	default:
		return nil, badRequest(typeInvalidRequest, `the body needs "messages", or "channels" with "data"`)
	}
	switch {
	case len(items) == 0:
		return nil, badRequest(typeInvalidRequest, "the batch has no messages")
	case len(items) > s.maxBatch:
		return nil, problem.New(http.StatusRequestEntityTooLarge, typeBatchTooLarge,
			fmt.Sprintf("a batch holds at most %d messages", s.maxBatch))
	}
	if b.Channels != nil {
		// One message for every channel: its problems are the whole request's.
		if p := s.checkMessage(b.Data, b.Event); p != nil {
			return nil, p
		}
	}
	return items, nil
}

// storeBatch checks each message and stores those that pass in one broker call. It returns the
// problem of the whole request instead when the credential's publish rate does not allow them.
func (s *server) storeBatch(c echo.Context, claims *auth.Claims, key string, items []batchMessage) ([]batchResult, *problem.Details) {
	results := make([]batchResult, len(items))
	key = claims.IdempotencyKey(key) // the credential's, before each message's "#<i>"
	reqs := make([]broker.PublishRequest, 0, len(items))
	index := make([]int, 0, len(items)) // index[j] is the item reqs[j] came from
	for i, m := range items {
		results[i].Channel = m.Channel
		if p := s.checkBatchMessage(claims, m); p != nil {
			results[i].Error = p
			continue
		}
		req := broker.PublishRequest{Channel: m.Channel, Event: m.Event, Data: m.Data}
		if key != "" {
			req.IdempotencyKey = key + "#" + strconv.Itoa(i)
		}
		reqs = append(reqs, req)
		index = append(index, i)
	}
	if len(reqs) == 0 {
		return results, nil
	}
	if p := s.limiter.Take(claims.Identity(), len(reqs)); p != nil {
		return nil, p
	}
	ctx := c.Request().Context()
	if err := s.awaitFanOut(ctx); err != nil {
		for _, i := range index {
			results[i].Error = err
		}
		return results, nil
	}
	res, errs := s.broker.PublishBatch(ctx, reqs)
	for j, i := range index {
		switch {
		case j < len(errs) && errs[j] != nil:
			results[i].Error = s.brokerProblem(ctx, errs[j])
		case j >= len(res):
			results[i].Error = s.brokerProblem(ctx, fmt.Errorf("broker answered %d results for %d messages", len(res), len(reqs)))
		default:
			results[i].ID = res[j].ID.String()
			results[i].Replayed = res[j].Duplicate
			if !res[j].Duplicate {
				s.metrics.Published.Inc()
			}
		}
	}
	return results, nil
}

// checkBatchMessage validates one message of a batch and the token's right to publish it.
func (s *server) checkBatchMessage(claims *auth.Claims, m batchMessage) *problem.Details {
	if !broker.ValidChannel(m.Channel) {
		return invalidChannel()
	}
	if p := s.checkMessage(m.Data, m.Event); p != nil {
		return p
	}
	if !claims.CanPublish(m.Channel) {
		return forbidden("publishing", m.Channel)
	}
	return nil
}
