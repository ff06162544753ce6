//! The static GTFS feed (`/gtfs/static.zip`): agency, stops, routes, trips, stop
//! times, shapes, an every-day calendar and feed info, written from the city model's
//! routes and timetables through the shared `Schedule`, so a GTFS-realtime consumer
//! (or a validator) can resolve every trip, route and stop the realtime feeds name.
//!
//! Times are local (the agency's time zone) and a trip running past midnight reads
//! 24:xx and on, as GTFS wants. The zip is deterministic: rows are sorted and the
//! entries carry the zip format's fixed epoch, so the same city gives the same bytes.

use super::schedule::{Schedule, gtfs_date, gtfs_time};
use egret_model::CityModel;
use std::fmt::Write as _;
use std::io::{Cursor, Write as _};
use zip::write::SimpleFileOptions;

const AGENCY_ID: &str = "egret";
const SERVICE_ID: &str = "daily";
/// The simulated service runs every day of these years: a feed valid whatever day
/// the demo's clock or a replay says it is.
const SERVICE_START_DAY: i64 = 18_262; // 2020-01-01
const SERVICE_END_DAY: i64 = 25_567; // 2039-12-31
/// The publisher's page. The routes are a simulation, so no real operator's site.
const PUBLISHER_URL: &str = "https://example.org/egret";

/// The IANA zone of a fixed UTC offset: the three cities are on China Standard Time;
/// elsewhere an `Etc/GMT` zone (whose sign is inverted by POSIX convention).
pub fn timezone_name(offset_minutes: i32) -> String {
    match offset_minutes {
        480 => "Asia/Shanghai".into(),
        m if m % 60 == 0 && m != 0 => format!("Etc/GMT{:+}", -m / 60),
        _ => "Etc/UTC".into(),
    }
}

/// What riders read on the bus: the designation the Chinese name starts with
/// ("1路", "BRT快1线", "厦漳快线1"), else the route id.
fn short_name(route: &egret_model::city::Route) -> &str {
    route.name_zh.as_deref().and_then(|n| n.split_whitespace().next()).unwrap_or(&route.route_id)
}

/// One CSV field: quoted when it holds a separator, a quote or a line break.
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// A CSV file built row by row.
struct Csv(String);

impl Csv {
    fn new(header: &str) -> Self {
        Csv(format!("{header}\n"))
    }

    fn row<S: AsRef<str>>(&mut self, fields: &[S]) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            field(&mut self.0, f.as_ref());
        }
        self.0.push('\n');
    }
}

/// Six decimals of a degree are about 0.1 m: the data's own precision.
fn coord(v: f64) -> String {
    format!("{v:.6}")
}

fn metres(v: f64) -> String {
    format!("{v:.1}")
}

/// The feed's files, in the order they are written into the zip.
pub fn files(city: &CityModel, schedule: &Schedule) -> Vec<(&'static str, String)> {
    let tz = timezone_name(schedule.tz_offset_minutes);
    let (start, end) = (gtfs_date(SERVICE_START_DAY), gtfs_date(SERVICE_END_DAY));

    let mut agency = Csv::new("agency_id,agency_name,agency_url,agency_timezone,agency_lang");
    agency.row(&[AGENCY_ID, "Egret simulated buses (Xiamen, Zhangzhou, Quanzhou)", PUBLISHER_URL, &tz, "en"]);

    // Stop ids are unique per route direction in the city data; a stop named twice
    // is written once.
    let mut stops = Csv::new("stop_id,stop_name,stop_lat,stop_lon,location_type");
    let mut seen = std::collections::HashSet::new();
    for st in city.routes.iter().flat_map(|r| &r.directions).flat_map(|d| &d.stops) {
        if seen.insert(st.stop_id.as_str()) {
            stops.row(&[st.stop_id.as_str(), &st.name, &coord(st.lat), &coord(st.lon), "0"]);
        }
    }

    let mut routes = Csv::new("route_id,agency_id,route_short_name,route_long_name,route_type");
    for r in &city.routes {
        // 3: bus (BRT and the intercity coaches are buses too).
        routes.row(&[r.route_id.as_str(), AGENCY_ID, short_name(r), &r.name, "3"]);
    }

    let mut trips = Csv::new("route_id,service_id,trip_id,trip_headsign,direction_id,shape_id");
    let mut stop_times = Csv::new("trip_id,arrival_time,departure_time,stop_id,stop_sequence,timepoint,shape_dist_traveled");
    for (trip_id, t) in schedule.trips_sorted() {
        let plan = &schedule.directions[t.plan];
        let dir = &city.routes[plan.route].directions[plan.direction];
        // GTFS knows two directions; a third would be left unsaid rather than wrong.
        let direction = if plan.direction_id <= 1 { plan.direction_id.to_string() } else { String::new() };
        trips.row(&[plan.route_id.as_str(), SERVICE_ID, trip_id, &dir.headsign, &direction, &plan.shape_id]);
        let base = t.minute * 60;
        for (k, s) in plan.stops.iter().enumerate() {
            // The departure is the timetable's; the times after it are estimates.
            let timepoint = if k == 0 { "1" } else { "0" };
            let (arrival, departure) = (gtfs_time(base + s.arrival_s), gtfs_time(base + s.departure_s));
            stop_times.row(&[trip_id, &arrival, &departure, &s.stop_id, &s.sequence.to_string(), timepoint, &metres(s.distance_m)]);
        }
    }

    let mut shapes = Csv::new("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence,shape_dist_traveled");
    for plan in &schedule.directions {
        for (i, (p, along)) in plan.shape.iter().enumerate() {
            shapes.row(&[plan.shape_id.as_str(), &coord(p[1]), &coord(p[0]), &(i + 1).to_string(), &metres(*along)]);
        }
    }

    let mut calendar = Csv::new("service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date");
    calendar.row(&[SERVICE_ID, "1", "1", "1", "1", "1", "1", "1", &start, &end]);

    let mut feed_info = Csv::new("feed_publisher_name,feed_publisher_url,feed_lang,feed_start_date,feed_end_date,feed_version,feed_contact_url");
    feed_info.row(&["Egret", PUBLISHER_URL, "en", &start, &end, &city.version, PUBLISHER_URL]);

    vec![
        ("agency.txt", agency.0),
        ("stops.txt", stops.0),
        ("routes.txt", routes.0),
        ("trips.txt", trips.0),
        ("stop_times.txt", stop_times.0),
        ("shapes.txt", shapes.0),
        ("calendar.txt", calendar.0),
        ("feed_info.txt", feed_info.0),
    ]
}

/// The feed's files as a deflated zip.
pub fn zip(files: &[(&str, String)]) -> zip::result::ZipResult<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).unix_permissions(0o644);
    for (name, text) in files {
        writer.start_file(name, options)?;
        writer.write_all(text.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}

/// For a log line: how big the feed is.
pub fn summary(files: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, text) in files {
        let rows = text.lines().count().saturating_sub(1);
        let _ = write!(out, "{name}: {rows} rows; ");
    }
    out.trim_end_matches("; ").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> CityModel {
        CityModel::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")).expect("city")
    }

    #[test]
    fn csv_fields_with_commas_and_quotes_are_quoted() {
        let mut csv = Csv::new("a,b");
        csv.row(&["Jimei - Quanzhou (via X, G15)", "say \"hi\""]);
        assert_eq!(csv.0, "a,b\n\"Jimei - Quanzhou (via X, G15)\",\"say \"\"hi\"\"\"\n");
    }

    #[test]
    fn zones_of_offsets() {
        assert_eq!(timezone_name(480), "Asia/Shanghai");
        assert_eq!(timezone_name(-300), "Etc/GMT+5");
        assert_eq!(timezone_name(0), "Etc/UTC");
    }

    #[test]
    fn every_trip_has_its_stop_times_and_the_zip_is_deterministic() {
        let city = city();
        let schedule = Schedule::new(&city);
        let files = files(&city, &schedule);
        let stop_times = &files.iter().find(|(n, _)| *n == "stop_times.txt").expect("stop_times").1;
        let trips = &files.iter().find(|(n, _)| *n == "trips.txt").expect("trips").1;
        assert_eq!(trips.lines().count() - 1, schedule.trips_sorted().len());
        for line in stop_times.lines().skip(1) {
            let hours: u32 = line.split(',').nth(1).and_then(|t| t.split(':').next()).and_then(|h| h.parse().ok()).expect("a time");
            assert!(hours < 48, "{line}");
        }
        assert!(summary(&files).contains("stop_times.txt"));
        assert_eq!(zip(&files).expect("zip"), zip(&super::files(&city, &schedule)).expect("zip"));
    }
}
