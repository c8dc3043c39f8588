//! Generated patterns and paths for the tests that derived forms of
//! `PathPattern` agree with it: the unit tests here (`registry::generate`)
//! and the integration tests on ClickHouse (`tests/it/goal_matching.rs`,
//! which include this file), one generator for both.

/// A small deterministic generator (xorshift) of patterns, and of paths
/// likely to match them.
pub struct Gen(pub u64);

impl Gen {
    const ATOMS: &'static [&'static str] = &[
        "/", "a", "b", "/a", ".", "+", "?", "(", ")", "[", "]", "{", "}", "^", "$", "#", "-", " ",
        "\t", "\n", "\\", "'", "é", "ü", "|", "*", "**",
    ];

    pub fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }

    fn atom(&mut self, with_wildcards: bool) -> &'static str {
        let n = Self::ATOMS.len() - if with_wildcards { 0 } else { 3 };
        Self::ATOMS[self.next(n)]
    }

    pub fn pattern(&mut self) -> String {
        let len = self.next(9);
        (0..len).map(|_| self.atom(true)).collect()
    }

    pub fn path_for(&mut self, pattern: &str) -> String {
        if self.next(4) == 0 {
            let len = self.next(8);
            return (0..len).map(|_| self.atom(true)).collect();
        }
        let pieces: Vec<&str> = pattern.split('|').collect();
        let piece = pieces[self.next(pieces.len())];
        let mut path = String::new();
        if self.next(3) == 0 {
            path.push_str(self.atom(false));
        }
        for (i, part) in piece.split('*').enumerate() {
            if i > 0 {
                for _ in 0..self.next(3) {
                    path.push_str(self.atom(false));
                }
            }
            path.push_str(part);
        }
        if self.next(3) == 0 {
            path.push_str(self.atom(false));
        }
        path
    }
}
