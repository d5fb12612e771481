package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/gateway/broker"
)

// channelInfoResponse describes a channel.
type channelInfoResponse struct {
	Channel string `json:"channel"`
	// Subscribers counts this node's subscribers of the channel.
	Subscribers int `json:"subscribers"`
	// LastID is the channel's position: the id of its newest message, or for a channel without
	// messages the broker's epoch (the position every transport gives an empty channel).
	LastID string `json:"last_id"`
}

// channelInfo is GET /v1/channels/{channel}: the channel's local subscriber count and newest
// message id. It needs any permission on the channel (subscribe or publish) or an API key.
func (s *server) channelInfo(c echo.Context) error {
	claims, err := s.authenticate(c)
	if err != nil {
		return err
	}
	channel, err := channelParam(c)
	if err != nil {
		return err
	}
	if !claims.CanSubscribe(channel) && !claims.CanPublish(channel) {
		return forbidden("reading", channel)
	}
	ctx := c.Request().Context()
	page, err := s.broker.History(ctx, channel, broker.HistoryQuery{})
	if err != nil {
		return s.brokerProblem(ctx, err)
	}
	info := channelInfoResponse{Channel: channel, LastID: page.LastID.String()}
	if s.gateway != nil {
		info.Subscribers = s.gateway.Subscribers(channel)
	}
	return writeJSON(c, http.StatusOK, info)
}
