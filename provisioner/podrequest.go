package provisioner

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/migrahosting/cloudpods/provisioner/strictjson"
)

// PodRequest is a pod's own fields as the API's create body and the CLI's
// batch files spell them (docs/openapi.json, CreateRequest): one type and
// one strict decoder (DecodePodRequest) for both. Pointers and Auto tell a
// field left out from a zero one.
type PodRequest struct {
	TenantID string  `json:"tenantId"`
	VMID     AutoInt `json:"vmid"`
	Hostname string  `json:"hostname"`
	// IP is an address, or "auto" (the same as leaving it out).
	IP       string `json:"ip"`
	Cores    *int   `json:"cores"`
	MemoryMB *int   `json:"memoryMb"`
	SwapMB   *int   `json:"swapMb"`
	Storage  string `json:"storage"`
	Bridge   string `json:"bridge"`
	Template *int   `json:"template"`
}

// AutoInt is a JSON integer or the string "auto": Set when the field was
// given, Auto when it said "auto".
type AutoInt struct {
	N         int
	Set, Auto bool
}

func (a *AutoInt) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte(`"auto"`)) {
		*a = AutoInt{Set: true, Auto: true}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf(`must be an integer or "auto"`)
	}
	*a = AutoInt{N: n, Set: true}
	return nil
}

func (a AutoInt) MarshalJSON() ([]byte, error) {
	if a.Auto {
		return []byte(`"auto"`), nil
	}
	return json.Marshal(a.N)
}

// Given is the number, when one was given (not left out, not "auto").
func (a AutoInt) Given() (int, bool) { return a.N, a.Set && !a.Auto }

// AddressGiven is IP when one was given (not left out, not "auto").
func (r PodRequest) AddressGiven() (string, bool) { return r.IP, r.IP != "" && r.IP != "auto" }

// DecodePodRequest reads one pod's JSON object strictly: a key given twice,
// an unknown key, trailing data or a value of the wrong type is refused
// (a *strictjson.FieldError naming the field, or strictjson.ErrNotObject).
func DecodePodRequest(data []byte) (PodRequest, error) {
	var r PodRequest
	err := strictjson.Decode(data, &r)
	return r, err
}
