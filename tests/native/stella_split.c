// C test program for the DWARF-only symbolizer tests (tests/integration/test_dwarf_cold.py).
// Built with gcc -O2 -g, GCC splits check(): its early-return head is inlined into the callers
// and the rest becomes a clone, "check.part.0", while check() itself stays out of line (it is
// external). In DWARF both bodies point to check()'s DIE and neither has a name of its own.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int check(const char *p)
{
    if (!p)
        return 0;
    int s = 0;
    for (size_t i = 0; i < strlen(p); ++i) {
        s += p[i] * (int)i;
        if (s > 100000) {
            fprintf(stderr, "big %d\n", s);
            s = 0;
        }
    }
    printf("%d\n", s);
    return s;
}

__attribute__((noinline)) int report(int v)
{
    if (__builtin_expect(v < 0, 0)) {
        fprintf(stderr, "negative %d\n", v);
        abort();
    }
    return printf("report %d\n", v);
}

int main(int argc, char **argv)
{
    int s = check(argv[0]) + check(argc > 5 ? argv[1] : 0) + check(argv[argc - 1]);
    return report(s) & 1;
}
