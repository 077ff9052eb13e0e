package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// readmePart is the first submatch of re in README; the test fails
// naming what when there is none.
func readmePart(t *testing.T, re, what string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(re).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("README has no %s", what)
	}
	return m[1]
}

// readmeForms is README's "Every form, with its options" block, one line
// per entry.
func readmeForms(t *testing.T) []string {
	block := readmePart(t, "(?s)Every form, with its options:\n\n```text\n(.*?)```", "\"Every form, with its options\" block")
	return strings.Split(strings.TrimRight(block, "\n"), "\n")
}

// TestREADMEFormsAreCommands: every command README's "Every form" block
// names is a command of cloudpod's tree, every --flag it gives a command is
// a flag of that command (its own or inherited), cloudpod-create's flags
// are the ones it takes, and every command of the tree has a form there.
func TestREADMEFormsAreCommands(t *testing.T) {
	root := newRootCommand(&globalOptions{getenv: func(string) string { return "" }})
	formed := map[string]bool{}
	for _, line := range readmeForms(t) {
		if k := strings.Index(line, "  #"); k >= 0 {
			line = line[:k]
		}
		for _, form := range strings.Split(line, ";") {
			for _, problem := range checkForm(root, form, formed) {
				t.Errorf("README's \"Every form\": %s", problem)
			}
		}
	}
	var missing []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if sub.HasSubCommands() {
				walk(sub)
			} else if !formed[sub.CommandPath()] {
				missing = append(missing, sub.CommandPath())
			}
		}
	}
	walk(root)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README's \"Every form\" block lacks %v", missing)
	}
}

// TestDocsCommandsHaveTheirFlags: every cloudpod command line README and
// docs/*.md quote, in inline code or as a line of a code block, names
// commands of the tree and gives each only flags it has.
func TestDocsCommandsHaveTheirFlags(t *testing.T) {
	root := newRootCommand(&globalOptions{getenv: func(string) string { return "" }})
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	inline := regexp.MustCompile("`((?:cloudpod|" + restrictedName + ") [^`]*)`")
	block := regexp.MustCompile(`(?m)^(?:\$ )?((?:cloudpod|` + restrictedName + `) .*)$`)
	n := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, m := range inline.FindAllStringSubmatch(string(b), -1) {
			lines = append(lines, m[1])
		}
		for _, m := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
			for _, c := range block.FindAllStringSubmatch(m[1], -1) {
				lines = append(lines, c[1])
			}
		}
		for _, line := range lines {
			if k := strings.Index(line, " #"); k >= 0 {
				line = line[:k]
			}
			for _, form := range strings.Split(line, ";") {
				for _, part := range strings.Split(form, "&&") {
					n++
					for _, problem := range checkForm(root, part, nil) {
						t.Errorf("%s: %s", filepath.Base(file), problem)
					}
				}
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d command lines found in README and docs", n)
	}
}

// checkForm says what is wrong with one command form: a flag that its
// command lacks, or that cloudpod-create refuses. The command is the
// deepest one the words name; after "|" a word may name a sibling (ip next
// | list | reserve HOST). formed, when set, collects the commands named.
func checkForm(root *cobra.Command, form string, formed map[string]bool) []string {
	words := strings.Fields(form)
	if len(words) == 0 {
		return nil
	}
	form = strings.Join(words, " ")
	restricted := words[0] == restrictedName
	if !restricted && words[0] != "cloudpod" {
		return []string{fmt.Sprintf("%q does not start with cloudpod or %s", form, restrictedName)}
	}
	var problems []string
	group, cmd := root, root
	if restricted {
		cmd = child(root, "create")
	}
	for _, w := range words[1:] {
		for _, tok := range strings.Split(strings.Trim(w, "[](),…"), "|") {
			if tok == "" {
				continue
			}
			if sub := child(group, tok); sub != nil && !restricted {
				cmd = sub
				if formed != nil {
					formed[sub.CommandPath()] = true
				}
				if sub.HasSubCommands() {
					group = sub
				}
				continue
			}
			f := flagName.FindStringSubmatch(tok)
			if f == nil {
				continue
			}
			switch {
			case restricted && !restrictedFlags[f[1]]:
				problems = append(problems, fmt.Sprintf("%q gives --%s, which %s refuses", form, f[1], restrictedName))
			case restricted:
			case cmd.Flags().Lookup(f[1]) == nil && cmd.InheritedFlags().Lookup(f[1]) == nil:
				problems = append(problems, fmt.Sprintf("%q gives --%s, which %q does not have", form, f[1], cmd.CommandPath()))
			}
		}
	}
	return problems
}

var flagName = regexp.MustCompile(`^--([a-z][a-z0-9-]*)`)

// TestREADMEOtherCreateFlags: the flags README lists as "Other create
// flags" are create's.
func TestREADMEOtherCreateFlags(t *testing.T) {
	other := readmePart(t, "(?s)\nOther create flags: (.*?)\n\n", "\"Other create flags\" paragraph")
	create := mustFind(t, newRootCommand(&globalOptions{getenv: func(string) string { return "" }}), "create")
	names := regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(other, -1)
	if len(names) == 0 {
		t.Fatalf("no flags in %q", other)
	}
	for _, n := range names {
		if create.Flags().Lookup(n[1]) == nil {
			t.Errorf("README names create's --%s, which create does not have", n[1])
		}
	}
}

func child(c *cobra.Command, name string) *cobra.Command {
	for _, sub := range c.Commands() {
		if sub.Name() == name {
			return sub
		}
	}
	return nil
}

func mustFind(t *testing.T, root *cobra.Command, path ...string) *cobra.Command {
	t.Helper()
	c, rest, err := root.Find(path)
	if err != nil || len(rest) > 0 {
		t.Fatalf("no command %v: %v", path, err)
	}
	return c
}
