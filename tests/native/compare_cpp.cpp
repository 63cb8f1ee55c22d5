// C++ program for the llvm-symbolizer comparison (tests/integration/test_llvm_symbolizer_compare.py).
// Built -O2 -g, it has what trips symbolizers: functions split into hot and
// ".cold" parts (unlikely throws), std::unique_ptr (whose __uniq_ptr_data
// has an inheriting constructor), a class with its own inheriting
// constructor, virtual calls, lambdas, templates and std containers.
// It is never run: only its files are read.
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace peer {

struct Rect {
    int w, h;
    Rect(int a, int b) : w(a), h(b) {}
    virtual ~Rect() = default;
    virtual int area() const { return w * h; }
};

struct Square : Rect {
    using Rect::Rect;  // an inheriting constructor
    int area() const override { return w * w; }
};

__attribute__((noinline)) int checked(int x)
{
    if (__builtin_expect(x < 0, 0)) {
        throw std::runtime_error("negative: " + std::to_string(x));  // goes to checked(int).cold
    }
    return x * 3;
}

__attribute__((noinline)) std::unique_ptr<Rect> make(int i)
{
    if (i % 3 == 0) {
        return std::make_unique<Square>(i, i);
    }
    return std::make_unique<Rect>(i, i + 1);
}

template <typename K, typename V>
__attribute__((noinline)) V total(const std::map<K, V> &m)
{
    V t{};
    for (const auto &kv : m) {
        if (__builtin_expect(kv.second < 0, 0)) {
            throw std::invalid_argument("bad value for key");
        }
        t += kv.second;
    }
    return t;
}

__attribute__((noinline)) int run(int n)
{
    std::vector<std::unique_ptr<Rect>> shapes;
    std::map<std::string, long> names;
    for (int i = 0; i < n; ++i) {
        shapes.push_back(make(i));
        names[std::to_string(i)] = checked(i);
    }
    int sum = 0;
    for (auto &s : shapes) {
        sum += s->area();
    }
    auto by = [n](int v) { return v * n + 1; };
    return by(sum) + static_cast<int>(total(names));
}

}  // namespace peer

int main(int argc, char **argv)
{
    (void)argv;
    try {
        std::printf("%d\n", peer::run(argc + 4));
    } catch (const std::exception &e) {
        std::printf("error %s\n", e.what());
        return 1;
    }
    return 0;
}
