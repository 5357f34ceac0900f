package keepalived

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Pos is a place in a configuration file.
type Pos struct {
	File string
	Line int // 1-based
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Error is bad input, with where it is.
type Error struct {
	Pos Pos
	Msg string
	Err error // the cause, e.g. an *ipvs.Error or a file error; may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Pos.String() + ": " + e.Msg + ": " + e.Err.Error()
	}
	return e.Pos.String() + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(p Pos, format string, args ...any) *Error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// maxIncludeDepth bounds nested includes (keepalived has no bound but
// loops forever on a cycle; xlb reports the cycle).
const maxIncludeDepth = 16

// maxTokens bounds a configuration's size, so that a glob of huge files
// cannot exhaust memory: 10 million words.
const maxTokens = 10_000_000

type token struct {
	text   string
	pos    Pos
	first  bool // first on its line
	quoted bool // from "...": never a brace
}

func (t token) isOpen() bool  { return !t.quoted && t.text == "{" }
func (t token) isClose() bool { return !t.quoted && t.text == "}" }

// lexer turns files into tokens, expanding includes.
type lexer struct {
	opts   *Options
	toks   []token
	stack  []string // files being read, for cycles
	warn   func(p Pos, keyword, msg string)
	nfiles int
}

// file tokenizes src, which was read from name (a path as given or
// found by a glob).
func (lx *lexer) file(name string, src []byte) error {
	if len(lx.stack) > maxIncludeDepth {
		return errorf(Pos{name, 1}, "includes nested more than %d deep", maxIncludeDepth)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = name
	}
	for _, f := range lx.stack {
		if f == abs {
			return errorf(Pos{name, 1}, "include cycle: %s includes itself through %s", name, strings.Join(lx.stack, " -> "))
		}
	}
	lx.stack = append(lx.stack, abs)
	defer func() { lx.stack = lx.stack[:len(lx.stack)-1] }()
	lx.nfiles++

	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		pos := Pos{name, i + 1}
		line := strings.TrimSuffix(lines[i], "\r")
		// A backslash at the end continues the line (keepalived 2.x).
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSuffix(lines[i], "\r")
		}
		words, err := splitLine(line, pos)
		if err != nil {
			return err
		}
		if len(words) > 0 && !words[0].quoted && words[0].text == "include" {
			if err := lx.include(pos, words[1:]); err != nil {
				return err
			}
			continue
		}
		for j := range words {
			words[j].first = j == 0
		}
		if len(lx.toks)+len(words) > maxTokens {
			return errorf(pos, "configuration longer than %d words", maxTokens)
		}
		lx.toks = append(lx.toks, words...)
	}
	return nil
}

// include reads the files that match a glob. A relative pattern is
// relative to the directory of the file that includes it, as keepalived
// resolves it. A pattern with wildcards that matches nothing is reported
// and skipped (keepalived logs it and goes on); a plain path that does
// not exist is an error.
func (lx *lexer) include(pos Pos, args []token) error {
	if len(args) != 1 {
		return errorf(pos, "include takes one file or pattern, got %d", len(args))
	}
	pat := args[0].text
	if !filepath.IsAbs(pat) {
		pat = filepath.Join(filepath.Dir(pos.File), pat)
	}
	wild := strings.ContainsAny(pat, "*?[")
	var matches []string
	if wild {
		m, err := lx.opts.Glob(pat)
		if err != nil {
			return &Error{Pos: pos, Msg: "include " + args[0].text, Err: err}
		}
		if len(m) == 0 {
			lx.warn(pos, "include", fmt.Sprintf("include %s matches no file", args[0].text))
			return nil
		}
		matches = m
	} else {
		matches = []string{pat}
	}
	for _, m := range matches {
		src, err := lx.opts.ReadFile(m)
		if err != nil {
			return &Error{Pos: pos, Msg: "include " + m, Err: err}
		}
		if err := lx.file(m, src); err != nil {
			return err
		}
	}
	return nil
}

// splitLine splits a line into words at blanks. "{" and "}" are words of
// their own even when written against others; '#' and '!' at the start
// of a word begin a comment; "..." is one word without its quotes (\" and
// \\ inside stand for themselves).
func splitLine(line string, pos Pos) ([]token, error) {
	var out []token
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\v' || c == '\f':
			i++
		case c == '#' || c == '!':
			return out, nil
		case c == '{' || c == '}':
			out = append(out, token{text: string(c), pos: pos})
			i++
		case c == '"':
			var b strings.Builder
			i++
			closed := false
			for i < len(line) {
				if line[i] == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
					b.WriteByte(line[i+1])
					i += 2
					continue
				}
				if line[i] == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(line[i])
				i++
			}
			if !closed {
				return nil, errorf(pos, "unterminated quoted string")
			}
			out = append(out, token{text: b.String(), pos: pos, quoted: true})
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t\v\f{}\"", rune(line[j])) {
				j++
			}
			out = append(out, token{text: line[i:j], pos: pos})
			i = j
		}
	}
	return out, nil
}

// node is a statement: a keyword, its arguments on the same line, and,
// for a block, the statements between its braces.
type node struct {
	key      string
	args     []string
	pos      Pos
	block    bool
	children []*node
}

// tree parses tokens into statements. The opening brace of a block may
// end the keyword's line or start the next one, as keepalived allows.
func tree(toks []token) ([]*node, error) {
	p := &treeParser{toks: toks}
	nodes, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, errorf(p.toks[p.i].pos, "unexpected }: no block to close")
	}
	return nodes, nil
}

type treeParser struct {
	toks []token
	i    int
}

// maxDepth bounds block nesting; keepalived's deepest is 4.
const maxDepth = 32

func (p *treeParser) block(depth int) ([]*node, error) {
	var nodes []*node
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.isClose() {
			return nodes, nil
		}
		if t.isOpen() {
			return nil, errorf(t.pos, "unexpected {: a block needs a keyword")
		}
		n := &node{key: t.text, pos: t.pos}
		p.i++
		for p.i < len(p.toks) && !p.toks[p.i].first && !p.toks[p.i].isOpen() && !p.toks[p.i].isClose() {
			n.args = append(n.args, p.toks[p.i].text)
			p.i++
		}
		if p.i < len(p.toks) && p.toks[p.i].isOpen() {
			open := p.toks[p.i]
			if depth+1 > maxDepth {
				return nil, errorf(open.pos, "blocks nested more than %d deep", maxDepth)
			}
			p.i++
			n.block = true
			kids, err := p.block(depth + 1)
			if err != nil {
				return nil, err
			}
			if p.i >= len(p.toks) {
				return nil, errorf(open.pos, "%s block not closed: missing }", n.key)
			}
			p.i++ // the }
			n.children = kids
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
