// A crate named like RustSec's smallvec advisory (RUSTSEC-2021-0003, smallvec::SmallVec::insert_many):
// a generic type with insert and insert_many, a closure, a trait with a provided method, Drop, and
// another type with a method of the same name. tests/native/rust_names.py builds it (legacy, v0).
use std::hint::black_box;

pub struct SmallVec<A> {
    items: Vec<A>,
}

impl<A: Clone> SmallVec<A> {
    pub fn insert(&mut self, i: usize, a: A) {
        self.items.insert(i, a)
    }

    pub fn insert_many<I: IntoIterator<Item = A>>(&mut self, i: usize, it: I) {
        let mut j = i;
        it.into_iter().for_each(|a| {
            self.items.insert(j, a);
            j += 1;
        });
    }
}

pub trait Shape {
    fn area(&self) -> u64;
    fn describe(&self) -> u64 {
        self.area() + 1
    }
}

impl<A> Shape for SmallVec<A> {
    fn area(&self) -> u64 {
        self.items.len() as u64
    }
}

impl<A> Drop for SmallVec<A> {
    fn drop(&mut self) {
        black_box(self.items.len());
    }
}

pub struct Other;

impl Other {
    pub fn insert_many(&self, n: u64) -> u64 {
        black_box(n + 7)
    }
}

fn main() {
    let mut v: SmallVec<u8> = SmallVec { items: vec![1, 2] };
    v.insert(0, 3);
    v.insert_many(1, [4u8, 5].iter().map(|x| x + 1));
    black_box(v.describe());
    black_box(Other.insert_many(1));
}
