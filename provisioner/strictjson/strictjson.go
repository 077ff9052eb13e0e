// Package strictjson decodes one JSON object into a struct and refuses
// what encoding/json lets pass: a key given twice (at any depth; json
// keeps the last, so a body could say one thing to a reviewer and another
// to the code), a key that is no field (json also matches keys case-
// insensitively; here a key must be spelled as its field's tag), trailing
// data and values of the wrong type. Every refusal names its field. The
// service's request bodies and the CLI's batch files both decode through
// it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// FieldError is a problem with one field of the object.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// ErrNotObject is a document that is not one JSON object: not JSON at all,
// another type, or more than one value.
var ErrNotObject = errors.New("not one JSON object")

// Decode reads data, one JSON object, into dst, a pointer to a struct. An
// error is a *FieldError or wraps ErrNotObject.
func Decode(data []byte, dst any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("strictjson: Decode into %T, want a pointer to a struct", dst))
	}
	fields := fieldsOf(v.Elem().Type())
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return notObject(err)
	} else if tok != json.Delim('{') {
		return fmt.Errorf("%w: the document is %s", ErrNotObject, kindOf(tok))
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return notObject(err)
		}
		key := tok.(string) // inside an object the decoder yields keys as strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return notObject(err)
		}
		if seen[key] {
			return &FieldError{Field: key, Problem: "appears twice: give each field once"}
		}
		seen[key] = true
		if path, dup := duplicateKey(raw); dup {
			return &FieldError{Field: key + "." + path, Problem: "appears twice: give each field once"}
		}
		idx, ok := fields[key]
		if !ok {
			return &FieldError{Field: key, Problem: "unknown field"}
		}
		f := v.Elem().Field(idx)
		if err := json.Unmarshal(raw, f.Addr().Interface()); err != nil {
			return &FieldError{Field: key, Problem: valueProblem(err, f.Type())}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return notObject(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: more than one JSON value", ErrNotObject)
	}
	return nil
}

func notObject(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the JSON ends early", ErrNotObject)
	}
	return fmt.Errorf("%w: %v", ErrNotObject, err)
}

// fieldsOf maps each exported field's JSON name to its index.
func fieldsOf(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = i
	}
	return out
}

// duplicateKey reports a key given twice in any object inside raw, with
// its path.
func duplicateKey(raw json.RawMessage) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var walk func() (string, bool)
	walk = func() (string, bool) {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return "", false
				}
				k := kt.(string)
				if seen[k] {
					return k, true
				}
				seen[k] = true
				if p, dup := walk(); dup {
					return k + "." + p, true
				}
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if p, dup := walk(); dup {
					return fmt.Sprintf("%d.%s", i, p), true
				}
			}
			_, _ = dec.Token()
		}
		return "", false
	}
	return walk()
}

// valueProblem says what is wrong with a field's value.
func valueProblem(err error, t reflect.Type) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return "must be " + TypeName(t)
	}
	return err.Error()
}

// TypeName is how a value's expected type reads in a refusal.
func TypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Int16, reflect.Int8:
		return "an integer"
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		return "a non-negative integer"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.Kind().String()
}

func kindOf(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "a list"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "true or false"
	}
	return "null"
}
