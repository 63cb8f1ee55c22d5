// C++ test program for the symbolizer tests: a namespaced class template's
// static member, a namespaced function template, an operator, a function
// taking std types (long demangled names), and libstdc++'s std::terminate.
// Built with -O2 -g as well (tests/native/build.py, build_dwarf_variants): the
// peer functions' unlikely branches then go to separate "<function>.cold"
// parts, in the symbol table and in DWARF's DW_AT_ranges.
// Prints "<name> <address>" lines, "ready", then blocks reading stdin.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace stella {

template <typename T>
struct Box {
    T v;
    __attribute__((noinline)) static Box make(T x) { return Box{x}; }
};

struct Vec2 {
    int x, y;
};

__attribute__((noinline)) Vec2 operator+(Vec2 a, Vec2 b) { return Vec2{a.x + b.x, a.y + b.y}; }

__attribute__((noinline)) void *return_address() { return __builtin_return_address(0); }

template <typename T>
__attribute__((noinline)) void *twice(T x, T *out)
{
    *out = x + x;
    void *ret = return_address();
    return ret;
}

__attribute__((noinline)) int count(std::vector<std::string> const &v) { return static_cast<int>(v.size()); }

}  // namespace stella

namespace peer {

struct Rect {
    int w, h;
};

// An external function with a cold part (the throw path).
__attribute__((noinline)) int checked_area(Rect const &r)
{
    if (__builtin_expect(r.w < 0 || r.h < 0, 0)) {
        std::fprintf(stderr, "bad rect %d x %d\n", r.w, r.h);
        throw std::invalid_argument("negative size");
    }
    return r.w * r.h;
}

namespace {
// Internal linkage: GCC writes no linkage name for it in DWARF.
__attribute__((noinline)) int scaled(int v, int k)
{
    if (__builtin_expect(v > 1000000, 0)) {
        std::fprintf(stderr, "too big %d\n", v);
        throw std::out_of_range("scaled");
    }
    return v * k;
}
}  // namespace

// A member function with a cold part.
struct Canvas {
    std::vector<Rect> rects;
    __attribute__((noinline)) int paint(int n);
};

__attribute__((noinline)) int Canvas::paint(int n)
{
    for (int i = 0; i < n; ++i)
        rects.push_back(Rect{i, i + 1});
    int total = 0;
    for (auto const &r : rects) {
        if (__builtin_expect(r.w > 1000000, 0)) {
            std::fprintf(stderr, "huge %d\n", r.w);
            throw std::runtime_error("too big");
        }
        total += scaled(checked_area(r), n);
    }
    return total;
}

__attribute__((noinline)) int run(int n)
{
    Canvas c;
    try {
        return c.paint(n);
    } catch (std::exception const &e) {
        std::fprintf(stderr, "run: %s\n", e.what());
        return -1;
    }
}

}  // namespace peer

int main()
{
    long out = 0;
    std::printf("Box_make %p\n", reinterpret_cast<void *>(&stella::Box<int>::make));
    std::printf("twice %p\n", reinterpret_cast<void *>(&stella::twice<long>));
    std::printf("twice_ret %p\n", stella::twice<long>(21, &out));
    stella::Vec2 (*plus)(stella::Vec2, stella::Vec2) = &stella::operator+;
    std::printf("operator_plus %p\n", reinterpret_cast<void *>(plus));
    std::printf("count %p\n", reinterpret_cast<void *>(&stella::count));
    std::printf("terminate %p\n", reinterpret_cast<void *>(&std::terminate));
    std::printf("values %ld %d %d\n", out, stella::Box<int>::make(1).v, stella::count({"a", "b"}));
    std::printf("peer_run %p %d\n", reinterpret_cast<void *>(&peer::run), peer::run(3));
    std::printf("ready\n");
    std::fflush(stdout);
    char buf[256];
    while (std::fread(buf, 1, sizeof buf, stdin) > 0) {
    }
    return 0;
}
