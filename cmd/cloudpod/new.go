package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/provisioner"
)

// `cloudpod new`: an interactive builder. It asks what to make, then only
// the questions that kind needs, each with a default read from PVE, each
// answer checked at once by the rules of the flag it becomes; at the end
// it shows a summary and the equivalent command line, saves the answers
// when asked (--save), and on confirmation runs that very command line
// through the CLI, with its progress display. Nothing is changed before
// the confirmation.

type newOptions struct {
	save   string
	from   string
	yes    bool
	mirror string
}

// newFileVersion is the format of the answer files --save writes.
const newFileVersion = 1

func newNewCommand(g *globalOptions) *cobra.Command {
	o := &newOptions{}
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Build a CloudPod, container, cloud-init VM or OpenWrt router by answering questions (on a terminal)",
		Long: `Ask what to make — a CloudPod from the golden template, a container from an OS template, a cloud-init VM,
an OpenWrt router container or an OpenWrt router VM — then only the questions that kind needs, each with a
default read from PVE: the next free VMID and address (IPAM, reserving nothing), the node, the storages with
their content types and fill, the node's bridges, the templates and images already there (the catalogue
after them: a catalogue template is downloaded, with its progress, after you confirm). Each answer is
checked at once by the rules of the flag it becomes. Enter accepts the default, Esc goes back a question,
Ctrl-C leaves and creates nothing.

At the end: a summary, the equivalent cloudpod command line (run it next time instead), the answers saved
with --save FILE, and on confirmation that command line runs as if typed. cloudpod new --from FILE asks
again with the saved answers as defaults; with --yes it asks nothing (a terminal is then not needed).`,
		Example: `  cloudpod new
  cloudpod new --save web.json
  cloudpod new --from web.json --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			interactive := o.from == "" || !o.yes
			if o.yes && o.from == "" {
				return fmt.Errorf("%w: --yes replays a saved answer file: give it with --from FILE", errUsage)
			}
			if interactive && !(isTerminal(g.stdout) && isTerminalFile(g.stdin)) {
				return fmt.Errorf("%w: cloudpod new asks its questions on a terminal, and this is none: give the flags to cloudpod create, ct create, vm create, openwrt create or openwrt vm instead (or replay saved answers with cloudpod new --from FILE --yes)", errUsage)
			}
			var saved map[string]string
			if o.from != "" {
				var err error
				if saved, err = loadAnswers(o.from); err != nil {
					return err
				}
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			w := &wizard{ctx: cmd.Context(), g: g, prov: prov, o: o, a: map[string]string{}, globals: passedGlobals(cmd), cache: map[string]any{}}
			for k, v := range saved {
				w.a[k] = v
			}
			if !interactive {
				w.replaying = true
				return w.replay()
			}
			w.ask = newAsker(g.stdin, g.stdout, g.getenv("NO_COLOR") != "", terminalWidth(g.stdout))
			return w.interact()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.save, "save", "", "write the answers to FILE (JSON) for cloudpod new --from FILE")
	f.StringVar(&o.from, "from", "", "start from the answers saved in FILE (--save)")
	f.BoolVar(&o.yes, "yes", false, "with --from: ask nothing, check the saved answers, run the command")
	f.StringVar(&o.mirror, "mirror", provisioner.DefaultOpenWrtMirror, "OpenWrt download server, for the OpenWrt kinds")
	return cmd
}

// passedGlobals are the connection and IPAM flags given to `cloudpod new`,
// passed on to the command it runs (never printed: the next run gets them
// from wherever this one did).
func passedGlobals(cmd *cobra.Command) []string {
	var out []string
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			out = append(out, "--"+f.Name+"="+f.Value.String())
		}
	})
	return out
}

// wizard is one run of `cloudpod new`.
type wizard struct {
	ctx  context.Context
	g    *globalOptions
	prov *provisioner.Provisioner
	o    *newOptions
	ask  *asker
	a    map[string]string // answers by question key
	// replaying: saved answers run without questions, where a VMID a
	// guest holds is the flow's to judge (converge on the same spec).
	replaying bool
	globals   []string
	// cache holds what was read from PVE, by what it is.
	cache map[string]any
}

// cached reads a value from PVE once per key.
func cached[T any](w *wizard, key string, read func() (T, error)) (T, error) {
	if v, ok := w.cache[key]; ok {
		return v.(T), nil
	}
	v, err := read()
	if err == nil {
		w.cache[key] = v
	}
	return v, err
}

// questions are the kind question and, once a kind is chosen, its own.
func (w *wizard) questions() []question {
	qs := []question{w.kindQuestion()}
	if k, ok := kinds[w.a["kind"]]; ok {
		qs = append(qs, k.questions(w)...)
	}
	return qs
}

// val is an answer, or the default of its question when it was not asked
// yet: what a check of a later question's answer builds the request from.
func (w *wizard) val(key string) string {
	if v, ok := w.a[key]; ok {
		return v
	}
	for _, q := range w.questions() {
		if q.key == key && q.def != nil {
			if q.when != nil && !q.when() {
				return ""
			}
			v, _ := q.def()
			return v
		}
	}
	return ""
}

func (w *wizard) num(key string) int { n, _ := strconv.Atoi(w.val(key)); return n }

// with runs check with key answered v for the time of the check.
func (w *wizard) with(key, v string, check func() error) error {
	old, had := w.a[key]
	w.a[key] = v
	defer func() {
		if had {
			w.a[key] = old
		} else {
			delete(w.a, key)
		}
	}()
	return check()
}

// interact asks until every question of the kind is answered, then
// summarises, saves and, on confirmation, runs the command.
func (w *wizard) interact() error {
	out := w.g.stdout
	fmt.Fprintln(out, "cloudpod new — Enter takes the default, Esc goes back a question, Ctrl-C leaves (nothing is created before you confirm).")
	var asked []int
	for i := 0; ; {
		if err := w.stopped(); err != nil {
			return err
		}
		qs := w.questions()
		if i >= len(qs) {
			cmds := w.commands()
			w.summary(qs, cmds)
			if err := w.saveAnswers(qs, cmds); err != nil {
				return err
			}
			ok, res, err := w.ask.confirm(w.ctx, "Create it now?", true)
			if err != nil {
				return err
			}
			switch res {
			case wentBack:
				i, asked = asked[len(asked)-1], asked[:len(asked)-1]
				fmt.Fprintf(out, "← back to: %s\n", qs[i].label())
				continue
			case leftWizard:
				return w.left("the confirmation")
			}
			if !ok {
				fmt.Fprintln(out, "Nothing was created; the command above makes it.")
				return nil
			}
			return w.execute(cmds)
		}
		q := qs[i]
		if q.when != nil && !q.when() {
			delete(w.a, q.key)
			i++
			continue
		}
		v, res, err := w.askOne(q)
		if err != nil {
			return err
		}
		switch res {
		case wentBack:
			if len(asked) > 0 {
				i, asked = asked[len(asked)-1], asked[:len(asked)-1]
				fmt.Fprintf(out, "← back to: %s\n", qs[i].label())
			}
			continue
		case leftWizard:
			return w.left(q.label())
		}
		if prev, ok := w.a[q.key]; ok && prev != v {
			// A changed answer changes what comes after it: ask it anew.
			for _, later := range qs[i+1:] {
				delete(w.a, later.key)
			}
		}
		w.a[q.key] = v
		fmt.Fprintf(out, "✓ %s: %s\n", q.label(), q.shown(v))
		asked = append(asked, i)
		i++
	}
}

// askOne puts one question on the terminal, its default and list read
// now.
func (w *wizard) askOne(q question) (string, outcome, error) {
	def := w.a[q.key]
	if _, ok := w.a[q.key]; !ok && q.def != nil {
		var err error
		if def, err = q.def(); err != nil {
			return "", leftWizard, err
		}
	}
	var choices []choice
	if q.choices != nil {
		var err error
		if choices, err = q.choices(); err != nil {
			return "", leftWizard, err
		}
	}
	note := ""
	if q.note != nil {
		note = q.note()
	}
	return w.ask.ask(w.ctx, q, note, def, choices)
}

// stopped: a signal (SIGINT from outside, SIGTERM) ends the wizard between
// questions as Ctrl-C does.
func (w *wizard) stopped() error {
	select {
	case <-w.g.stop:
		return w.left("a signal")
	default:
		return nil
	}
}

// left is leaving the wizard: nothing was created, exit 130.
func (w *wizard) left(where string) error {
	return fmt.Errorf("%w: left cloudpod new at %s; nothing was created", provisioner.ErrInterrupted, where)
}

// replay checks saved answers in the order the questions come, each with
// the answers before it (a later one's problem is named at its own key),
// then runs the command without asking.
func (w *wizard) replay() error {
	saved := w.a
	w.a = map[string]string{}
	for i := 0; i < len(w.questions()); i++ {
		q := w.questions()[i]
		if q.when != nil && !q.when() {
			continue
		}
		v, ok := saved[q.key]
		if !ok {
			v = w.val(q.key)
		}
		if q.check != nil {
			if err := q.check(v); err != nil {
				return fmt.Errorf("%w: %s: the saved answer %s=%q: %s", errUsage, w.o.from, q.key, v, err)
			}
		}
		w.a[q.key] = v
	}
	qs := w.questions()
	cmds := w.commands()
	w.summary(qs, cmds)
	if err := w.saveAnswers(qs, cmds); err != nil {
		return err
	}
	return w.execute(cmds)
}

// commands are the command lines the answers make: any preparation (a
// template to download) first, the guest's own command last.
func (w *wizard) commands() [][]string {
	return kinds[w.a["kind"]].commands(w)
}

// commandLine is argv as one shell line.
func commandLine(cmds [][]string) string {
	lines := make([]string, len(cmds))
	for i, argv := range cmds {
		words := make([]string, len(argv))
		for j, a := range argv {
			words[j] = shellQuote(a)
		}
		lines[i] = "cloudpod " + strings.Join(words, " ")
	}
	return strings.Join(lines, " && ")
}

// summary shows every answer and the command line that does the same.
func (w *wizard) summary(qs []question, cmds [][]string) {
	out := w.g.stdout
	fmt.Fprintln(out, "\nSummary:")
	width := 0
	for _, q := range qs {
		width = max(width, len(q.label()))
	}
	for _, q := range qs {
		if v, ok := w.a[q.key]; ok {
			fmt.Fprintf(out, "  %-*s  %s\n", width, q.label(), q.shown(v))
		}
	}
	fmt.Fprintf(out, "\nThe same without questions:\n  %s\n\n", commandLine(cmds))
}

// answerFile is what --save writes: the answers by question key, and for
// people the command line they make.
type answerFile struct {
	Version int               `json:"cloudpodNew"`
	Answers map[string]string `json:"answers"`
	Command string            `json:"command"`
}

func (w *wizard) saveAnswers(qs []question, cmds [][]string) error {
	if w.o.save == "" {
		return nil
	}
	f := answerFile{Version: newFileVersion, Answers: map[string]string{}, Command: commandLine(cmds)}
	for _, q := range qs {
		if v, ok := w.a[q.key]; ok {
			f.Answers[q.key] = v
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the command's && as it is
	enc.SetIndent("", "  ")
	_ = enc.Encode(f)
	if err := os.WriteFile(w.o.save, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("%w: --save: %v", errUsage, err)
	}
	fmt.Fprintf(w.g.stdout, "Answers saved to %s: cloudpod new --from %s asks again with them as defaults, --yes runs them as they are.\n", w.o.save, shellQuote(w.o.save))
	return nil
}

// loadAnswers reads a file --save wrote; an unknown field, another
// version or an unknown kind is refused naming it.
func loadAnswers(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: --from: %v", errUsage, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f answerFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: --from %s is not an answer file of cloudpod new --save: %v", errUsage, path, err)
	}
	if f.Version != newFileVersion {
		return nil, fmt.Errorf("%w: --from %s has cloudpodNew %d; this cloudpod reads version %d", errUsage, path, f.Version, newFileVersion)
	}
	k, ok := kinds[f.Answers["kind"]]
	if !ok {
		return nil, fmt.Errorf("%w: --from %s: kind %q is none of %s", errUsage, path, f.Answers["kind"], strings.Join(kindNames(), ", "))
	}
	known := map[string]bool{"kind": true}
	for _, key := range k.keys() {
		known[key] = true
	}
	var unknown []string
	for key := range f.Answers {
		if !known[key] {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%w: --from %s: %s asks nothing called %s", errUsage, path, f.Answers["kind"], strings.Join(unknown, ", "))
	}
	return f.Answers, nil
}

// execute runs the command lines one after the other, as if typed, with
// the connection settings `cloudpod new` was given.
func (w *wizard) execute(cmds [][]string) error {
	for _, argv := range cmds {
		fmt.Fprintf(w.g.stdout, "→ %s\n", commandLine([][]string{argv}))
		g := &globalOptions{stdin: w.g.stdin, stdout: w.g.stdout, stderr: w.g.stderr, stop: w.g.stop, getenv: w.g.getenv}
		root := newRootCommand(g)
		root.SetArgs(append(append([]string(nil), argv...), w.globals...))
		root.SetIn(g.stdin)
		root.SetOut(g.stdout)
		root.SetErr(g.stderr)
		root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", errUsage, err) })
		if err := root.ExecuteContext(w.ctx); err != nil {
			return err
		}
	}
	return nil
}

// problemText is a check's refusal as the one sentence the question
// shows.
func problemText(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.TrimPrefix(err.Error(), "usage: "))
}
