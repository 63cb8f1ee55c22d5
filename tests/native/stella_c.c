/* C test program for the symbolizer tests (tests/integration/test_symbolize_native.py).
 *
 * Prints "<name> <address>" lines for functions whose names, offsets and
 * build-id the tests check, then "ready", then blocks reading stdin so the
 * test can resolve the addresses in the live process; exits at EOF.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>

/* A USDT probe point: a nop plus a .note.stapsdt record (type 3, name "stapsdt":
 * probe pc, .stapsdt.base address, semaphore 0, then provider, name, arguments). */
#define STELLA_PROBE(provider, name)                                                   \
    __asm__ __volatile__("990: nop\n"                                                  \
                         ".pushsection .note.stapsdt,\"\",\"note\"\n"                  \
                         ".balign 4\n"                                                 \
                         ".4byte 992f-991f, 994f-993f, 3\n"                            \
                         "991: .asciz \"stapsdt\"\n"                                   \
                         "992: .balign 4\n"                                            \
                         "993: .8byte 990b\n"                                          \
                         ".8byte _.stapsdt.base\n"                                     \
                         ".8byte 0\n"                                                  \
                         ".asciz \"" #provider "\"\n"                                  \
                         ".asciz \"" #name "\"\n"                                      \
                         ".asciz \"\"\n"                                               \
                         "994: .balign 4\n"                                            \
                         ".popsection\n"                                               \
                         ".ifndef _.stapsdt.base\n"                                    \
                         ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
                         ".weak _.stapsdt.base\n"                                      \
                         ".hidden _.stapsdt.base\n"                                    \
                         "_.stapsdt.base: .space 1\n"                                  \
                         ".size _.stapsdt.base, 1\n"                                   \
                         ".popsection\n"                                               \
                         ".endif\n")

__attribute__((noinline)) int stella_add(int a, int b) /* LINE:stella_add */
{
    STELLA_PROBE(stella, add);
    return a + b;
}

static __attribute__((noinline)) void *stella_return_address(void)
{
    return __builtin_return_address(0);
}

__attribute__((noinline)) void *stella_caller(void)
{
    void *ret = stella_return_address();
    return ret;
}

int main(void)
{
    printf("stella_add %p\n", (void *)stella_add);
    printf("stella_caller %p\n", (void *)stella_caller);
    printf("stella_caller_ret %p\n", stella_caller());
    printf("malloc %p\n", (void *)malloc);
    printf("getaddrinfo %p\n", (void *)getaddrinfo);
    printf("sum %d\n", stella_add(2, 3));
    printf("ready\n");
    fflush(stdout);
    char buf[256];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {
    }
    return 0;
}
