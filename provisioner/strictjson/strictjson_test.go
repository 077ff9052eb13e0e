package strictjson

import (
	"errors"
	"testing"
)

type body struct {
	Name  string         `json:"name"`
	Count *int           `json:"count"`
	Tags  []string       `json:"tags"`
	Meta  map[string]any `json:"meta"`
	skip  int
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in  string
		field     string // the FieldError's field; "" with notObject for ErrNotObject
		notObject bool
		wantName  string
		wantCount int
	}{
		{name: "fields", in: `{"name":"a","count":3,"tags":["x"],"meta":{"k":1}}`, wantName: "a", wantCount: 3},
		{name: "whitespace around", in: " \n{\"name\":\"a\"}\n ", wantName: "a"},
		{name: "duplicate key", in: `{"count":1,"name":"a","count":9223372036854775807}`, field: "count"},
		{name: "duplicate nested key", in: `{"meta":{"k":1,"k":2}}`, field: "meta.k"},
		{name: "duplicate key in a list's object", in: `{"meta":{"l":[{"a":1},{"b":1,"b":2}]}}`, field: "meta.l.1.b"},
		{name: "unknown key", in: `{"name":"a","password":"x"}`, field: "password"},
		{name: "another case is another key", in: `{"Name":"a"}`, field: "Name"},
		{name: "unexported field is no key", in: `{"skip":1}`, field: "skip"},
		{name: "wrong type", in: `{"count":"two"}`, field: "count"},
		{name: "overflow", in: `{"count":99999999999999999999}`, field: "count"},
		{name: "list", in: `[]`, notObject: true},
		{name: "string", in: `"x"`, notObject: true},
		{name: "truncated", in: `{"name":`, notObject: true},
		{name: "trailing value", in: `{} {}`, notObject: true},
		{name: "trailing garbage", in: `{}x`, notObject: true},
		{name: "empty", in: ``, notObject: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b body
			err := Decode([]byte(tt.in), &b)
			var fe *FieldError
			switch {
			case tt.notObject:
				if !errors.Is(err, ErrNotObject) {
					t.Fatalf("err %v, want ErrNotObject", err)
				}
			case tt.field != "":
				if !errors.As(err, &fe) || fe.Field != tt.field || fe.Problem == "" {
					t.Fatalf("err %v, want a problem with field %q", err, tt.field)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if b.Name != tt.wantName || (tt.wantCount != 0 && (b.Count == nil || *b.Count != tt.wantCount)) {
					t.Errorf("decoded %+v", b)
				}
			}
		})
	}
}

func TestDecodeSaysWhatTypeIsWanted(t *testing.T) {
	var b body
	err := Decode([]byte(`{"count":"two"}`), &b)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Problem != "must be an integer" {
		t.Fatalf("err %v", err)
	}
}
