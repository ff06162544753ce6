//! Small geodesy helpers: great-circle distance and interpolation along a polyline.

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two `[lon, lat]` points.
pub fn haversine_m(a: [f64; 2], b: [f64; 2]) -> f64 {
    let (lat1, lat2) = (a[1].to_radians(), b[1].to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b[0] - a[0]).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

/// The `[lon, lat]` point at `fraction` (0..=1) of a polyline's length.
pub fn point_along(line: &[[f64; 2]], fraction: f64) -> [f64; 2] {
    let Some(first) = line.first() else { return [0.0, 0.0] };
    let total: f64 = line.windows(2).map(|w| haversine_m(w[0], w[1])).sum();
    let mut left = total * fraction.clamp(0.0, 1.0);
    for w in line.windows(2) {
        let d = haversine_m(w[0], w[1]);
        if left <= d && d > 0.0 {
            let t = left / d;
            return [w[0][0] + (w[1][0] - w[0][0]) * t, w[0][1] + (w[1][1] - w[0][1]) * t];
        }
        left -= d;
    }
    *line.last().unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = haversine_m([118.0, 24.0], [118.0, 25.0]);
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
    }

    #[test]
    fn midpoint_of_a_straight_line() {
        let p = point_along(&[[118.0, 24.0], [118.0, 24.2]], 0.5);
        assert!((p[1] - 24.1).abs() < 1e-6);
    }
}
