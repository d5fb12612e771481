package valkey

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// TestDeliveredDataIsUTF8: data stored before publishes were checked for UTF-8 is handed on as
// valid UTF-8 and valid JSON; valid data is handed on byte for byte.
func TestDeliveredDataIsUTF8(t *testing.T) {
	for _, tt := range []struct{ stored, want string }{
		{`{"a":"é"}`, `{"a":"é"}`},
		{"\"\xff\xfe\"", "\"\uFFFD\""},
		{"{\"a\":\"x\xc3\",\"b\":[\"\xed\xa0\x80\"]}", "{\"a\":\"x\uFFFD\",\"b\":[\"\uFFFD\"]}"},
	} {
		got := entry{data: tt.stored}.message("c").Data
		if string(got) != tt.want || !utf8.Valid(got) || !json.Valid(got) {
			t.Errorf("stored %q is delivered as %q, want %q", tt.stored, got, tt.want)
		}
	}
}
