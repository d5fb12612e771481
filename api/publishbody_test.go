package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/herald-gateway/herald/gateway/broker"
)

// referencePublish decodes a publish body the way the API did before the fast path, and still
// does when parsePublish declines: encoding/json, unknown fields refused, one value only.
func referencePublish(body []byte) (publishRequest, bool) {
	var req publishRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, false
	}
	return req, true
}

var publishBodies = []string{
	// taken by the fast path
	`{"data":{"t":1732700000000000000,"n":12345}}`,
	`{"data":1}`,
	` {"data" : "x" , "event" : "e.v:1-_" } ` + "\n",
	`{"event":"","data":null}`,
	`{"data":[1,-2.5e+10,0.0,-0,1E3,true,false,null,"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00",{},[],{"a":{"b":[{}]}}]}`,
	"{\"data\":\"caf\xc3\xa9 \xff\x7f\"}",
	"\t\r\n{\t\"data\"\r:\n[ 1 , 2 ]\t}\r\n",
	// declined: encoding/json decides
	``, ` `, `{}`, `[]`, `null`, `{"data":1}{}`, `{"data":1} x`, `{"data":1,}`, `{"data":}`,
	`{"Data":1}`, `{"DATA":1}`, `{"d\u0061ta":1}`, `{"data":1,"data":2}`, `{"data":1,"event":"a","event":"b"}`,
	`{"data":1,"other":2}`, `{"data":1,"event":null}`, `{"data":1,"event":5}`, `{"data":1,"event":"\u0041"}`,
	"{\"data\":1,\"event\":\"caf\xc3\xa9\"}", `{"data":01}`, `{"data":1.}`, `{"data":.5}`, `{"data":1e}`,
	`{"data":-}`, `{"data":+1}`, `{"data":tru}`, `{"data":nul}`, `{"data":truex}`, `{"data":"\x"}`,
	`{"data":"\u12"}`, `{"data":"\u12G4"}`, "{\"data\":\"a\nb\"}", `{"data":[1 2]}`, `{"data":{"a" 1}}`,
	`{"data":{1:2}}`, `{"data":[1,]}`, `{"data":{"a":1,}}`, `{"data":"unterminated}`, `{"data":[`,
	`{"data":1`, `{"data"`, `{"data":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	"\xef\xbb\xbf{\"data\":1}", `{"data":1}` + "\x00",
}

func TestParsePublishAgreesWithEncodingJSON(t *testing.T) {
	fast := 0
	for _, body := range publishBodies {
		if checkParsePublish(t, []byte(body)) {
			fast++
		}
	}
	if fast != 7 {
		t.Fatalf("the fast path took %d of the bodies, want the first 7", fast)
	}
}

// FuzzParsePublish checks that whatever parsePublish accepts, encoding/json accepts too, with
// the same data and event.
func FuzzParsePublish(f *testing.F) {
	for _, body := range publishBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkParsePublish(t, body)
	})
}

// checkParsePublish compares parsePublish with referencePublish on body and reports whether
// the fast path took it.
func checkParsePublish(t *testing.T, body []byte) bool {
	t.Helper()
	data, event, ok := parsePublish(body)
	if !ok {
		return false
	}
	want, valid := referencePublish(body)
	switch {
	case !valid:
		t.Fatalf("parsePublish accepted %q, which encoding/json refuses", body)
	case !bytes.Equal(data, want.Data) || event != want.Event:
		t.Fatalf("parsePublish(%q) = %q, %q; encoding/json: %q, %q", body, data, event, want.Data, want.Event)
	}
	return true
}

// TestAppendPublishResponse checks the hand-written answer against encoding/json's.
func TestAppendPublishResponse(t *testing.T) {
	for _, channel := range []string{"orders:42", "a/b=c+d@e.f_g-h", `odd"<&>` + "\u2028\xff\\\n"} {
		id := broker.ID{Ms: 1732700000000, Seq: 7}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(publishResponse{ID: id.String(), Channel: channel}); err != nil {
			t.Fatal(err)
		}
		if got := appendPublishResponse(nil, id, channel); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("channel %q: got %s, want %s", channel, got, want.Bytes())
		}
	}
}

// TestReadLimitedMatchesMaxBytesReader checks that readLimited yields what reading through
// http.MaxBytesReader yields: the same bytes, and an *http.MaxBytesError past the limit.
func TestReadLimitedMatchesMaxBytesReader(t *testing.T) {
	const limit = 3000
	for _, size := range []int{0, 1, 1023, 1024, 1025, 2999, 3000, 3001, 5000} {
		body := bytes.Repeat([]byte("ab"), size)[:size]
		for _, chunked := range []bool{false, true} {
			var r, ref io.Reader = bytes.NewReader(body), bytes.NewReader(body)
			if chunked {
				r, ref = iotest.OneByteReader(r), iotest.OneByteReader(ref)
			}
			want, wantErr := io.ReadAll(http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(ref), limit))
			got, err := readLimited(r, make([]byte, 0, 1024), limit)
			var mb *http.MaxBytesError
			if !bytes.Equal(got, want) || (wantErr == nil) != (err == nil) || (err != nil && !errors.As(err, &mb)) {
				t.Fatalf("size %d chunked %v: got %d bytes, %v; want %d bytes, %v", size, chunked, len(got), err, len(want), wantErr)
			}
		}
	}
}
