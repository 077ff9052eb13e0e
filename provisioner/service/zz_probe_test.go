package service

import (
	"context"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestZZProbe(t *testing.T) {
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
}
