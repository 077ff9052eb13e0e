package main

import (
	"context"
	"fmt"
	"io"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/huh"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

// How `cloudpod new` asks one question on the terminal: a huh form of one
// field (a list or a line of text), run as its own bubbletea program so
// that what the wizard knows can change between questions (the next
// question's default comes from the answers so far and from PVE). Enter
// accepts, Esc (or Shift-Tab) goes back a question, Ctrl-C leaves.

// maxListed is how many entries of a list show at once (24 rows).
const maxListed = 10

// question is one thing the wizard asks.
type question struct {
	key string
	// name is the answer's label in the transcript and summary; title
	// the question as asked (name when empty).
	name  string
	title string
	// note is the text under the title: PVE's state behind the default,
	// the reason for a rule.
	note func() string
	// choices, when set, make the question a list to pick from; else the
	// answer is typed.
	choices func() ([]choice, error)
	// def is the default: the answer so far, else this.
	def func() (string, error)
	// check refuses an answer with one sentence; nil accepts any.
	check func(string) error
	// when, if set, says whether the question is asked at all (it depends
	// on earlier answers).
	when func() bool
	// show is the answer as the transcript and summary show it.
	show func(string) string
}

// choice is one entry of a list question.
type choice struct{ label, value string }

// outcome is how a question ended.
type outcome int

const (
	answered outcome = iota
	wentBack
	leftWizard
)

// asker asks questions on a terminal.
type asker struct {
	in    io.Reader
	out   io.Writer
	theme *huh.Theme
	keys  *huh.KeyMap
	width int
}

// newAsker sets up the forms: plain ANSI colours, none with NO_COLOR
// (lipgloss's renderer then writes no colour codes at all), no list
// filtering (Esc is "back"), and at most 80 columns.
func newAsker(in io.Reader, out io.Writer, noColor bool, width int) *asker {
	theme := huh.ThemeBase16()
	if noColor {
		lipgloss.SetColorProfile(termenv.Ascii)
		theme = huh.ThemeBase()
	}
	keys := huh.NewDefaultKeyMap()
	keys.Select.Filter.SetEnabled(false)
	return &asker{in: in, out: out, theme: theme, keys: keys, width: min(width, 80)}
}

// ask puts q on the terminal with def filled in and returns the answer.
func (a *asker) ask(ctx context.Context, q question, note, def string, choices []choice) (string, outcome, error) {
	value := def
	check := q.check
	if check == nil {
		check = func(string) error { return nil }
	}
	var field huh.Field
	if choices != nil {
		opts := make([]huh.Option[string], len(choices))
		for i, c := range choices {
			opts[i] = huh.NewOption(c.label, c.value)
		}
		// Options before Value: huh scrolls the list to the option the
		// value holds when Options comes second, hiding those above it.
		sel := huh.NewSelect[string]().Title(q.title).Description(note)
		if len(opts) > maxListed {
			sel.Height(maxListed + 2)
		}
		field = sel.Options(opts...).Value(&value).Validate(check)
	} else {
		field = huh.NewInput().Title(q.title).Description(note).Value(&value).Validate(check)
	}
	out, err := a.run(ctx, field)
	return value, out, err
}

// run runs a form of one field until it is answered, abandoned for the
// question before (Esc) or left (Ctrl-C).
func (a *asker) run(ctx context.Context, field huh.Field) (outcome, error) {
	form := huh.NewForm(huh.NewGroup(field)).WithTheme(a.theme).WithKeyMap(a.keys).WithShowHelp(false).WithWidth(a.width)
	m := &questionModel{form: form}
	p := tea.NewProgram(m, tea.WithInput(a.in), tea.WithOutput(a.out), tea.WithoutSignalHandler(), tea.WithContext(ctx))
	if _, err := p.Run(); err != nil {
		return leftWizard, fmt.Errorf("the terminal form failed: %w", err)
	}
	switch {
	case m.back:
		return wentBack, nil
	case m.form.State == huh.StateAborted:
		return leftWizard, nil
	}
	return answered, nil
}

// questionModel runs one form, turning Esc into "back" before the form
// sees it, and ends when the form is answered or aborted (Ctrl-C).
type questionModel struct {
	form *huh.Form
	back bool
}

func (m *questionModel) Init() tea.Cmd { return m.form.Init() }

func (m *questionModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if k, ok := msg.(tea.KeyMsg); ok && (k.Type == tea.KeyEsc || k.Type == tea.KeyShiftTab) {
		m.back = true
		return m, tea.Quit
	}
	f, cmd := m.form.Update(msg)
	m.form = f.(*huh.Form)
	if m.form.State != huh.StateNormal {
		return m, tea.Quit
	}
	return m, cmd
}

func (m *questionModel) View() string {
	if m.back || m.form.State != huh.StateNormal {
		return ""
	}
	return m.form.View()
}

// confirm asks a yes/no question; Esc goes back.
func (a *asker) confirm(ctx context.Context, title string, def bool) (bool, outcome, error) {
	value := def
	out, err := a.run(ctx, huh.NewConfirm().Title(title).Affirmative("Yes").Negative("No").Value(&value))
	return value, out, err
}
