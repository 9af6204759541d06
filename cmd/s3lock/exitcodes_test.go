package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// readmeExitCodes returns the rows of the table under "### Exit codes" in
// the README, as (code, meaning) pairs.
func readmeExitCodes(t *testing.T) [][2]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n### Exit codes\n")
	if !ok {
		t.Fatal(`README.md has no "### Exit codes" section`)
	}
	var rows [][2]string
	inTable := false
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the table ends at its first other line
			}
			continue
		}
		inTable = true
		if line == "|---|---|" {
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "| "), " |"), " | ")
		if len(cells) != 2 {
			t.Fatalf("README exit-code table: row %q has %d cells; want 2", line, len(cells))
		}
		rows = append(rows, [2]string{cells[0], cells[1]})
	}
	if len(rows) == 0 || rows[0] != [2]string{"code", "meaning"} {
		t.Fatalf("README exit-code table starts %q; want the header | code | meaning |", rows)
	}
	return rows[1:]
}

// TestExitCodesREADME: the README's exit-code table is exitCodes, row for
// row and word for word, so the help (printed from exitCodes) and the
// README say the same.
func TestExitCodesREADME(t *testing.T) {
	t.Parallel()
	readme := readmeExitCodes(t)
	for i := range max(len(readme), len(exitCodes)) {
		var got, want [2]string
		if i < len(readme) {
			got = readme[i]
		}
		if i < len(exitCodes) {
			want = [2]string{exitCodes[i].code, exitCodes[i].meaning}
		}
		if got != want {
			t.Errorf("README exit-code row %d = | %s | %s |\nwant (from exitCodes) | %s | %s |", i+1, got[0], got[1], want[0], want[1])
		}
	}
}

// TestExitCodesHelp: "s3lock --help" shows every row of exitCodes, each
// command's help the rows that name it, wrapped to 78 columns.
func TestExitCodesHelp(t *testing.T) {
	t.Parallel()
	root := newRoot(streams{})
	helps := map[string]string{"": root.Long}
	for _, c := range root.Commands() {
		helps[c.Name()] = c.Long + c.Example
	}
	for name, help := range helps {
		words := strings.Join(strings.Fields(help), " ")
		for _, row := range exitCodes {
			want := name == "" || strings.Contains(" "+strings.Join(row.cmds, " ")+" ", " "+name+" ")
			line := strings.Join(strings.Fields(row.code+" "+strings.ReplaceAll(row.meaning, "`", "")), " ")
			if got := strings.Contains(words, line) && strings.Contains(help, "\n  "+row.code+" "); got != want {
				t.Errorf("help of %q shows exit code %s: %v; want %v", name, row.code, got, want)
			}
		}
		if _, table, ok := strings.Cut(help, "\nExit codes:\n"); ok {
			for _, l := range strings.Split(table, "\n") {
				if len(l) > 78 {
					t.Errorf("help of %q: exit-code line %q is %d columns; want at most 78", name, l, len(l))
				}
			}
		}
	}
}

// TestExitCodesTableComplete: every exit code constant has its row.
func TestExitCodesTableComplete(t *testing.T) {
	t.Parallel()
	shown := map[string]bool{}
	for _, row := range exitCodes {
		for _, n := range strings.FieldsFunc(row.code, func(r rune) bool { return r < '0' || r > '9' }) {
			shown[n] = true
		}
	}
	for _, code := range []int{exitOK, exitFailure, exitUsage, exitUnavailable, exitConflict, exitLeaseLost, exitLimitConflict, exitCannotExec, exitNotFound, exitSignal} {
		if !shown[strconv.Itoa(code)] {
			t.Errorf("exit code %d has no row in exitCodes", code)
		}
	}
}
