// Package openapi holds herald's OpenAPI 3.1 document, the contract of its HTTP API. The API
// serves it at /openapi.yaml, and the API's tests check real requests and responses against it.
package openapi

import _ "embed"

// Spec is openapi.yaml: the OpenAPI 3.1 document of herald's HTTP API.
//
//go:embed openapi.yaml
var Spec []byte
