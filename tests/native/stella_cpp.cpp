// C++ test program for the symbolizer tests: a namespaced class template's
// static member, a namespaced function template, an operator, a function
// taking std types (long demangled names), and libstdc++'s std::terminate.
// Prints "<name> <address>" lines, "ready", then blocks reading stdin.
#include <cstdio>
#include <exception>
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
    std::printf("ready\n");
    std::fflush(stdout);
    char buf[256];
    while (std::fread(buf, 1, sizeof buf, stdin) > 0) {
    }
    return 0;
}
