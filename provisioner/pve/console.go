package pve

// ConsolePath is how the adapter reaches a node's guest consoles
// (API.ConsolePath).
type ConsolePath struct {
	// Login is the PVE user whose password opens the consoles (a console
	// login is configured); "" when the API token does.
	Login string
	// Tokens is the node's verdict on API-token console tickets, with its
	// reason; not asked (the zero value) when Login is set.
	Tokens ConsoleTokenVerdict
}
