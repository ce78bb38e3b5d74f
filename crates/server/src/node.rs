//! This process's share of a deployment of several Freshet processes (`--node i/N`): it
//! reads the partitions `p` of every Kafka topic with `p mod N = i`, so each process owns
//! its partitions and the state of the keys in them (see `docs/scale-out.md`). A view
//! grouped by a topic's message key is then exact on each process for the keys of its
//! partitions.

use std::sync::Arc;

/// Process `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub index: u32,
    pub count: u32,
}

impl Node {
    /// `"i/N"`, with `0 <= i < N`.
    pub fn parse(v: &str) -> Result<Node, String> {
        let bad = || format!("invalid node \"{v}\": expected i/N with 0 <= i < N, e.g. 0/2");
        let (i, n) = v.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Node { index, count })
    }

    /// Whether this process reads partition `p`.
    pub fn owns(&self, p: i32) -> bool {
        p >= 0 && (p as u32) % self.count == self.index
    }

    /// The filter a Kafka reader applies to the partitions the broker reports.
    pub fn partition_view(self) -> freshet_connectors::kafka::PartitionView {
        Arc::new(move |parts: Vec<i32>| parts.into_iter().filter(|p| self.owns(*p)).collect())
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::Node;

    #[test]
    fn parses_and_owns() {
        let n = Node::parse("1/2").unwrap();
        assert_eq!((n.index, n.count), (1, 2));
        assert_eq!((n.partition_view())(vec![0, 1, 2, 3, 4]), vec![1, 3]);
        assert_eq!(
            (Node::parse(" 0 / 1 ").unwrap().partition_view())(vec![0, 1]),
            vec![0, 1]
        );
        for bad in ["2/2", "1/0", "1", "a/2", "-1/2", ""] {
            assert!(Node::parse(bad).is_err(), "{bad}");
        }
    }
}
