//! A route direction as a line: its segments end to end, with the distance along
//! it of every stop, and map-matching of a GPS position to a distance along it.
//!
//! Distances are in the city data's surveyed metres: a position on a segment's
//! geometry at a fraction of its drawn length is that fraction of its surveyed
//! length along the route (the way the simulator and the dashboard place buses).

use egret_model::city::haversine_m;
use egret_model::{CityModel, SegmentIdx};

/// How far from the route a GPS position may be and still be on it.
const MAX_OFF_ROUTE_M: f64 = 150.0;

/// One drawn piece of a segment, in a local metric plane.
#[derive(Debug, Clone)]
struct Piece {
    a: [f64; 2],
    b: [f64; 2],
    /// Distance along the route at `a` and at `b`.
    from_m: f64,
    to_m: f64,
}

#[derive(Debug, Clone)]
pub struct RoutePath {
    pub route: u32,
    pub direction: usize,
    pub segments: Vec<SegmentIdx>,
    /// Distance along the route where each segment starts (and, last, the total).
    pub segment_starts: Vec<f64>,
    /// (stop index in the direction, distance along the route).
    pub stops: Vec<f64>,
    pieces: Vec<Piece>,
    /// Latitude of the local plane's origin.
    lat0: f64,
}

fn plane(lat0: f64, p: [f64; 2]) -> [f64; 2] {
    [p[0] * 111_320.0 * lat0.to_radians().cos(), p[1] * 110_540.0]
}

impl RoutePath {
    pub fn new(city: &CityModel, route: u32, direction: usize) -> Option<RoutePath> {
        let dir = city.routes.get(route as usize)?.directions.get(direction)?;
        let segments: Vec<SegmentIdx> = dir.segments.iter().filter_map(|s| city.segment_idx(s)).collect();
        let lat0 = city.segment(*segments.first()?).geometry.first()?[1];
        let mut segment_starts = Vec::with_capacity(segments.len() + 1);
        let mut pieces = Vec::new();
        let mut base = 0.0;
        for &s in &segments {
            segment_starts.push(base);
            let seg = city.segment(s);
            let drawn: f64 = seg.geometry.windows(2).map(|w| haversine_m(w[0], w[1])).sum();
            let scale = if drawn > 0.0 { f64::from(seg.length_m) / drawn } else { 0.0 };
            let mut along = base;
            for w in seg.geometry.windows(2) {
                let len = haversine_m(w[0], w[1]) * scale;
                pieces.push(Piece { a: plane(lat0, w[0]), b: plane(lat0, w[1]), from_m: along, to_m: along + len });
                along += len;
            }
            base += f64::from(seg.length_m);
        }
        segment_starts.push(base);
        let stops = dir
            .stops
            .iter()
            .map(|st| {
                let i = dir.segments.iter().position(|s| *s == st.segment_id).unwrap_or(0);
                segment_starts.get(i).copied().unwrap_or(0.0) + f64::from(st.offset_m)
            })
            .collect();
        Some(RoutePath { route, direction, segments, segment_starts, stops, pieces, lat0 })
    }

    pub fn length_m(&self) -> f64 {
        self.segment_starts.last().copied().unwrap_or(0.0)
    }

    /// The distance along the route of a position, searching only `[from_m, to_m]`;
    /// `None` when the position is off the route there.
    pub fn locate(&self, lat: f64, lon: f64, from_m: f64, to_m: f64) -> Option<f64> {
        let p = plane(self.lat0, [lon, lat]);
        let mut best: Option<(f64, f64)> = None;
        for piece in self.pieces.iter().filter(|pc| pc.to_m >= from_m && pc.from_m <= to_m) {
            let (dx, dy) = (piece.b[0] - piece.a[0], piece.b[1] - piece.a[1]);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 { (((p[0] - piece.a[0]) * dx + (p[1] - piece.a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
            let (qx, qy) = (piece.a[0] + t * dx, piece.a[1] + t * dy);
            let off = ((p[0] - qx).powi(2) + (p[1] - qy).powi(2)).sqrt();
            let along = piece.from_m + t * (piece.to_m - piece.from_m);
            if off <= MAX_OFF_ROUTE_M && best.is_none_or(|(o, _)| off < o - 0.01) && (from_m..=to_m).contains(&along) {
                best = Some((off, along));
            }
        }
        best.map(|(_, along)| along)
    }

    /// The segment at a distance along the route, and how far into it (the end of
    /// the route is the end of its last segment).
    pub fn segment_at(&self, distance_m: f64) -> Option<(usize, f64)> {
        let i = self.segment_starts.partition_point(|s| *s <= distance_m).checked_sub(1)?;
        let i = i.min(self.segments.len().checked_sub(1)?);
        Some((i, distance_m - self.segment_starts[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_distance_on_the_route_is_on_a_segment_and_located_back() {
        let city = crate::repo_city();
        let path = RoutePath::new(&city, 0, 0).expect("route 0 direction 0");
        let total = path.length_m();
        for d in [0.0, total / 3.0, total - 1.0, total] {
            let (i, into) = path.segment_at(d).expect("on a segment");
            let seg = city.segment(path.segments[i]);
            assert!((0.0..=f64::from(seg.length_m)).contains(&into), "{d}: {into} into {}", seg.segment_id);
            let p = egret_model::city::point_along(&seg.geometry, into / f64::from(seg.length_m));
            let back = path.locate(p[1], p[0], 0.0, total).expect("located");
            assert!((back - d).abs() < 5.0, "{d} located at {back}");
        }
        assert_eq!(path.segment_at(-1.0), None);
    }
}
