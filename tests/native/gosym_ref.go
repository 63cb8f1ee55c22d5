// Reference reader for the Go symbolizer tests: Go's own debug/gosym decodes
// the function table of an UNSTRIPPED Go ELF file, located through its symbol
// table (runtime.pclntab .. runtime.epclntab, based at runtime.text), so it
// shares nothing with the canonicalizer's own search for the table.
//
//	gosym_ref FILE        reads hex addresses on stdin, prints "<entry> <name>" or "? ?" per line
//	gosym_ref -list FILE  prints "<entry> <end> <name>" for every function in the table
package main

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gosym_ref: "+format+"\n", args...)
	os.Exit(2)
}

func table(path string) *gosym.Table {
	f, err := elf.Open(path)
	if err != nil {
		fail("%v", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		fail("%s: no symbol table: %v", path, err)
	}
	var start, end, text uint64
	for _, s := range syms {
		switch s.Name {
		case "runtime.pclntab":
			start = s.Value
		case "runtime.epclntab":
			end = s.Value
		case "runtime.text":
			text = s.Value
		}
	}
	if start == 0 || end <= start || text == 0 {
		fail("%s: runtime.pclntab/epclntab/text symbols missing", path)
	}
	data := make([]byte, end-start)
	found := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr <= start && end <= p.Vaddr+p.Filesz {
			if _, err := p.ReadAt(data, int64(start-p.Vaddr)); err != nil {
				fail("%s: %v", path, err)
			}
			found = true
		}
	}
	if !found {
		fail("%s: pclntab not inside one loadable segment", path)
	}
	t, err := gosym.NewTable(nil, gosym.NewLineTable(data, text))
	if err != nil {
		fail("%s: %v", path, err)
	}
	return t
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	if len(os.Args) == 3 && os.Args[1] == "-list" {
		for _, fn := range table(os.Args[2]).Funcs {
			fmt.Fprintf(out, "%#x %#x %s\n", fn.Entry, fn.End, fn.Name)
		}
		return
	}
	if len(os.Args) != 2 {
		fail("usage: gosym_ref [-list] FILE")
	}
	t := table(os.Args[1])
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		pc, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(in.Text()), "0x"), 16, 64)
		if err != nil {
			fail("not a hex address: %q", in.Text())
		}
		if fn := t.PCToFunc(pc); fn != nil {
			fmt.Fprintf(out, "%#x %s\n", fn.Entry, fn.Name)
		} else {
			fmt.Fprintln(out, "? ?")
		}
	}
}
