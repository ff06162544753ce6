//! The road network as a directed graph for route guidance: gantries are the
//! nodes, road segments (from-gantry → to-gantry, with their length) the edges.
//!
//! It is built once from the `CityModel` and holds no costs: each query supplies
//! the cost of a segment (live travel time, free-flow time, length…), and may
//! refuse a segment (return `None`) to keep a kind of vehicle off it. That way one
//! graph serves every cost model and live speeds never need a rebuild.

use super::{CityModel, ReaderIdx, SegmentIdx, haversine_m};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy)]
struct Edge {
    from: ReaderIdx,
    to: ReaderIdx,
    length_m: u32,
}

/// Directed road graph over the gantries, indexed like the `CityModel` it came from.
#[derive(Debug, Clone)]
pub struct RoadGraph {
    /// By `SegmentIdx`.
    edges: Vec<Edge>,
    /// By `ReaderIdx`.
    outgoing: Vec<Vec<SegmentIdx>>,
    incoming: Vec<Vec<SegmentIdx>>,
    /// Readers at the end of at least one segment, with `[lon, lat]`: parking gates
    /// stand off the road network, so a route can never start or end at one.
    nodes: Vec<(ReaderIdx, [f64; 2])>,
}

/// A path found by `RoadGraph::shortest_path`: segments in driving order (empty
/// when it starts where it ends) and the sum of their costs.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphPath {
    pub segments: Vec<SegmentIdx>,
    pub cost: f64,
}

/// A heap entry: Dijkstra needs the cheapest first, `BinaryHeap` pops the largest,
/// so the order is reversed. Ties go to the lower node so results are repeatable.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    cost: f64,
    node: u32,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.cost.total_cmp(&self.cost).then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl RoadGraph {
    pub fn new(city: &CityModel) -> Self {
        let n = city.readers.len();
        let mut outgoing = vec![Vec::new(); n];
        let mut incoming = vec![Vec::new(); n];
        let mut edges = Vec::with_capacity(city.segments.len());
        for (i, s) in city.segments.iter().enumerate() {
            let idx = SegmentIdx(i as u32);
            // The model validated both ends at load, so they resolve.
            let (from, to) = (city.segment_from(idx), city.segment_to(idx));
            outgoing[from.0 as usize].push(idx);
            incoming[to.0 as usize].push(idx);
            edges.push(Edge { from, to, length_m: s.length_m });
        }
        let nodes = city
            .readers
            .iter()
            .enumerate()
            .filter(|(i, _)| !outgoing[*i].is_empty() || !incoming[*i].is_empty())
            .map(|(i, r)| (ReaderIdx(i as u32), [r.lon, r.lat]))
            .collect();
        RoadGraph { edges, outgoing, incoming, nodes }
    }

    /// The gantries a segment joins: (from, to).
    pub fn ends(&self, s: SegmentIdx) -> Option<(ReaderIdx, ReaderIdx)> {
        self.edges.get(s.0 as usize).map(|e| (e.from, e.to))
    }

    pub fn length_m(&self, s: SegmentIdx) -> Option<u32> {
        self.edges.get(s.0 as usize).map(|e| e.length_m)
    }

    /// Segments leaving a gantry (none for an unknown reader or a parking gate).
    pub fn outgoing(&self, r: ReaderIdx) -> &[SegmentIdx] {
        self.outgoing.get(r.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// Segments arriving at a gantry.
    pub fn incoming(&self, r: ReaderIdx) -> &[SegmentIdx] {
        self.incoming.get(r.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// The network node nearest to a point, among those `usable` accepts, with its
    /// great-circle distance in metres. A linear scan: a few hundred gantries cost
    /// microseconds, far less than an index would be worth.
    pub fn nearest(&self, lat: f64, lon: f64, usable: impl Fn(ReaderIdx) -> bool) -> Option<(ReaderIdx, f64)> {
        self.nodes
            .iter()
            .filter(|(r, _)| usable(*r))
            .map(|(r, at)| (*r, haversine_m([lon, lat], *at)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
    }

    /// Dijkstra from one gantry to another. `cost` gives each segment's cost, or
    /// `None` to keep off it; a negative or non-finite cost is treated as `None`,
    /// since Dijkstra is only correct with non-negative costs. `None` when `to`
    /// cannot be reached.
    pub fn shortest_path(&self, from: ReaderIdx, to: ReaderIdx, cost: impl Fn(SegmentIdx) -> Option<f64>) -> Option<GraphPath> {
        let n = self.outgoing.len();
        if from.0 as usize >= n || to.0 as usize >= n {
            return None;
        }
        let mut dist = vec![f64::INFINITY; n];
        let mut via: Vec<Option<SegmentIdx>> = vec![None; n];
        let mut heap = BinaryHeap::new();
        dist[from.0 as usize] = 0.0;
        heap.push(Entry { cost: 0.0, node: from.0 });
        while let Some(Entry { cost: here, node }) = heap.pop() {
            if node == to.0 {
                break;
            }
            if here > dist[node as usize] {
                continue; // a stale entry: a cheaper way here was already settled
            }
            for &s in &self.outgoing[node as usize] {
                let Some(c) = cost(s).filter(|c| c.is_finite() && *c >= 0.0) else { continue };
                let next = self.edges[s.0 as usize].to;
                let total = here + c;
                if total < dist[next.0 as usize] {
                    dist[next.0 as usize] = total;
                    via[next.0 as usize] = Some(s);
                    heap.push(Entry { cost: total, node: next.0 });
                }
            }
        }
        if !dist[to.0 as usize].is_finite() {
            return None;
        }
        let mut segments = Vec::new();
        let mut at = to;
        while at != from {
            let s = via[at.0 as usize]?;
            segments.push(s);
            at = self.edges[s.0 as usize].from;
        }
        segments.reverse();
        Some(GraphPath { segments, cost: dist[to.0 as usize] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::city::RoadClass;

    fn city() -> CityModel {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        CityModel::load(&dir).expect("city data")
    }

    fn reader(city: &CityModel, id: &str) -> ReaderIdx {
        city.reader_idx(id).expect("known reader")
    }

    #[test]
    fn shortest_by_length_between_two_known_gantries() {
        let city = city();
        let graph = RoadGraph::new(&city);
        let (from, to) = (reader(&city, "XM-R0010"), reader(&city, "XM-R0040"));
        let path = graph.shortest_path(from, to, |s| graph.length_m(s).map(f64::from)).expect("a path");
        let ids: Vec<&str> = path.segments.iter().map(|s| city.segment(*s).segment_id.as_str()).collect();
        // Worked out independently over segments.json; the only shortest one.
        let expected = [
            "XM-S0020", "XM-S0435", "XM-S0433", "XM-S0431", "XM-S0062", "XM-S0060", "XM-S0058", "XM-S0056", "XM-S0054", "XM-S0346",
            "XM-S0344",
        ];
        assert_eq!(ids, expected);
        assert_eq!(path.cost, 20_033.0);
        // The path is connected and runs from `from` to `to`.
        assert_eq!(graph.ends(path.segments[0]).map(|e| e.0), Some(from));
        assert_eq!(graph.ends(path.segments[path.segments.len() - 1]).map(|e| e.1), Some(to));
        for pair in path.segments.windows(2) {
            assert_eq!(graph.ends(pair[0]).map(|e| e.1), graph.ends(pair[1]).map(|e| e.0));
        }
    }

    #[test]
    fn a_cost_change_moves_the_route() {
        let city = city();
        let graph = RoadGraph::new(&city);
        let (from, to) = (reader(&city, "XM-R0010"), reader(&city, "XM-R0040"));
        let jammed = city.segment_idx("XM-S0062").expect("segment");
        let path = graph
            .shortest_path(from, to, |s| graph.length_m(s).map(|m| if s == jammed { 1e9 } else { f64::from(m) }))
            .expect("a detour");
        assert!(!path.segments.contains(&jammed));
        assert!(path.cost > 20_033.0 && path.cost < 1e9);
    }

    #[test]
    fn unreachable_when_costs_refuse_the_way() {
        let city = city();
        let graph = RoadGraph::new(&city);
        // A BRT station joins the roads only along the BRT viaduct: keep off it
        // and there is no way out.
        let station = reader(&city, "XM-R0050");
        assert!(graph.outgoing(station).iter().all(|s| city.segment(*s).road_class == RoadClass::Brt));
        let car = |s: SegmentIdx| (city.segment(s).road_class != RoadClass::Brt).then(|| f64::from(city.segment(s).length_m));
        assert_eq!(graph.shortest_path(station, reader(&city, "XM-R0040"), car), None);
        // A parking gate is not on the network at all.
        let gate = reader(&city, &city.lots[0].entry_reader_id);
        assert_eq!(graph.shortest_path(gate, station, |_| Some(1.0)), None);
        assert_eq!(graph.shortest_path(ReaderIdx(u32::MAX), station, |_| Some(1.0)), None);
    }

    #[test]
    fn same_node_is_an_empty_path() {
        let city = city();
        let graph = RoadGraph::new(&city);
        let r = reader(&city, "XM-R0010");
        assert_eq!(graph.shortest_path(r, r, |_| Some(1.0)), Some(GraphPath { segments: vec![], cost: 0.0 }));
    }

    #[test]
    fn nearest_snaps_to_a_gantry_never_a_gate() {
        let city = city();
        let graph = RoadGraph::new(&city);
        let r = city.reader(reader(&city, "XM-R0040"));
        let (found, d) = graph.nearest(r.lat + 0.001, r.lon, |_| true).expect("a node");
        assert_eq!(city.reader(found).reader_id, "XM-R0040");
        assert!((d - 111.2).abs() < 1.0, "{d}");
        let lot = &city.lots[0];
        let (found, _) = graph.nearest(lot.lat, lot.lon, |_| true).expect("a node");
        assert!(city.gate(found).is_none());
        assert_eq!(graph.nearest(lot.lat, lot.lon, |_| false), None);
    }
}
