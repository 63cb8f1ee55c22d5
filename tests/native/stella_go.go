// Go test program for the symbolizer tests: a method with a pointer
// receiver, a closure, a generic function (entry and a pc inside it) and a
// pc inside a method. Prints
// "<name> <address> <runtime name> <entry>" lines (the runtime's own
// FuncForPC names), "ready", then blocks reading stdin.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
)

type Counter struct{ n int }

//go:noinline
func (c *Counter) Inc() uintptr {
	c.n++
	pc, _, _, _ := runtime.Caller(0)
	return pc
}

//go:noinline
func Map[T any, U any](xs []T, f func(T) U) []U {
	out := make([]U, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func report(name string, pc uintptr) {
	fn := runtime.FuncForPC(pc)
	fmt.Printf("%s %#x %s %#x\n", name, pc, fn.Name(), fn.Entry())
}

func main() {
	c := &Counter{}
	double := func(x int) string { return fmt.Sprint(x * 2) }
	report("inc", reflect.ValueOf((*Counter).Inc).Pointer())
	report("inc_pc", c.Inc())
	report("closure", reflect.ValueOf(double).Pointer())
	var inMap uintptr
	probe := func(x int) string {
		inMap, _, _, _ = runtime.Caller(1) // a pc inside the generic Map instantiation
		return fmt.Sprint(x)
	}
	Map([]int{3}, probe)
	report("map_pc", inMap)
	report("map", runtime.FuncForPC(inMap).Entry())
	report("main", reflect.ValueOf(main).Pointer())
	fmt.Println("values", Map([]int{1, 2}, double), c.n)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
}
