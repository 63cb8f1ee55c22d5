// Rust test program for the symbolizer tests: an inherent impl method, a
// generic function and a trait method, each printing its own address and a
// std backtrace (std demangles with rustc-demangle), so the test compares
// our names with rustc's own. Prints "<name> <address>" and "BT <name> <debug
// backtrace>" lines, "ready", then blocks reading stdin.
use std::backtrace::Backtrace;
use std::io::{Read, Write};

struct Widget {
    w: u32,
    h: u32,
}

trait Shape {
    fn sides(&self) -> u32;
}

impl Widget {
    #[inline(never)]
    fn area(&self) -> u32 {
        println!("BT area {:?}", Backtrace::force_capture());
        self.w * self.h
    }
}

impl Shape for Widget {
    #[inline(never)]
    fn sides(&self) -> u32 {
        println!("BT sides {:?}", Backtrace::force_capture());
        4
    }
}

#[inline(never)]
fn generic<T: std::fmt::Debug>(x: T) -> String {
    println!("BT generic {:?}", Backtrace::force_capture());
    format!("{:?}", x)
}

fn main() {
    let area = Widget::area as fn(&Widget) -> u32;
    let sides = <Widget as Shape>::sides as fn(&Widget) -> u32;
    let gen = generic::<u32> as fn(u32) -> String;
    println!("area {:p}", area as *const ());
    println!("sides {:p}", sides as *const ());
    println!("generic {:p}", gen as *const ());
    let w = Widget { w: 2, h: 3 };
    println!("values {} {} {}", area(&w), sides(&w), gen(7));
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
