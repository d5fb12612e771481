package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/gateway/broker"
)

// History page sizes.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
	// DefaultHistoryPageBytes bounds a history page's message data and event names (see
	// Options.HistoryPageBytes).
	DefaultHistoryPageBytes = 1 << 20
)

// historyMessage is one message of a history page.
type historyMessage struct {
	Channel string          `json:"channel"`
	ID      string          `json:"id"`
	Event   string          `json:"event,omitempty"`
	Data    json.RawMessage `json:"data"`
}

// historyResponse is a page of a channel's log.
type historyResponse struct {
	Messages []historyMessage `json:"messages"`
	// Next is where to read on (pass it as since): the id of the last message returned; when
	// none was, the channel's position from the broker (its newest id, or an empty channel's
	// epoch, so that a later read from it notices a log lost in between).
	Next string `json:"next"`
	// Complete is true when no message after since is missing from the log (none was trimmed by
	// size or age, the log was not lost).
	Complete bool `json:"complete"`
	// Reason says why the page is not complete (the gap reasons of every transport); omitted
	// when it is.
	Reason string `json:"reason,omitempty"`
	// More is true when messages after Next exist already: the page was cut at limit or at its
	// byte bound.
	More bool `json:"more"`
}

// history is GET /v1/channels/{channel}/messages?since=&limit=: a page of the channel's log,
// oldest first, of the messages after since (from the oldest retained when since is absent).
// It needs subscribe permission on the channel or an API key.
func (s *server) history(c echo.Context) error {
	claims, err := s.authenticate(c)
	if err != nil {
		return err
	}
	channel, err := channelParam(c)
	if err != nil {
		return err
	}
	if !claims.CanSubscribe(channel) {
		return forbidden("reading", channel)
	}
	q, err := historyQuery(c)
	if err != nil {
		return err
	}
	q.MaxBytes = s.historyPageBytes
	ctx := c.Request().Context()
	page, err := s.broker.History(ctx, channel, q)
	if err != nil {
		return s.brokerProblem(ctx, err)
	}
	resp := historyResponse{
		Messages: make([]historyMessage, len(page.Messages)),
		// No message returned: nothing follows since up to the channel's position.
		Next:     page.LastID.String(),
		Complete: page.Complete,
		Reason:   page.Gap.String(),
		More:     page.More,
	}
	for i, m := range page.Messages {
		resp.Messages[i] = historyMessage{Channel: m.Channel, ID: m.ID.String(), Event: m.Event, Data: m.Data}
		resp.Next = resp.Messages[i].ID
	}
	return writeJSON(c, http.StatusOK, resp)
}

// historyQuery reads the since and limit query parameters.
func historyQuery(c echo.Context) (broker.HistoryQuery, error) {
	q := broker.HistoryQuery{Limit: defaultHistoryLimit}
	params := c.QueryParams()
	if v, ok := params["since"]; ok {
		if len(v) != 1 {
			return q, badRequest(typeInvalidSince, `send one "since"`)
		}
		id, err := broker.ParseID(v[0])
		if err != nil {
			return q, badRequest(typeInvalidSince, `"since" is one message id ("<ms>-<seq>", or 0 for the oldest retained)`)
		}
		q.Since = id
	}
	if v, ok := params["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if len(v) != 1 || err != nil || n < 1 || n > maxHistoryLimit { // v has at least one element
			return q, badRequest(typeInvalidLimit, `"limit" is a whole number from 1 to 1000`)
		}
		q.Limit = n
	}
	return q, nil
}
