//! Random but realistic vehicles: plates of the three cities (闽D Xiamen, 闽E
//! Zhangzhou, 闽C Quanzhou; some 8-character new-energy plates), RFID tag ids, the
//! class mix, and the one-character misreads a camera or reader makes.

use egret_model::{Plate, VehicleClass};
use rand::Rng;

/// Serial characters: digits and letters except I and O, as on real plates.
const SERIAL: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

pub fn random_plate<R: Rng>(rng: &mut R) -> Plate {
    let region = match rng.random_range(0..100) {
        0..70 => 'D',
        70..85 => 'E',
        _ => 'C',
    };
    let new_energy = rng.random_bool(0.15);
    let mut s = format!("闽{region}");
    if new_energy {
        s.push(if rng.random_bool(0.5) { 'D' } else { 'F' });
    }
    for i in 0..5 {
        // Keep at least the last characters numeric, as issued plates mostly are.
        let pool = if i >= 3 { &SERIAL[..10] } else { SERIAL };
        s.push(char::from(pool[rng.random_range(0..pool.len())]));
    }
    Plate::parse(&s).unwrap_or_else(|_| unreachable!("generated plate {s} is valid"))
}

/// Replaces one serial character with a different one.
pub fn misread<R: Rng>(rng: &mut R, plate: Plate) -> Plate {
    let chars: Vec<char> = plate.as_str().chars().collect();
    let at = rng.random_range(2..chars.len());
    let mut out = chars.clone();
    while out[at] == chars[at] {
        out[at] = char::from(SERIAL[rng.random_range(0..SERIAL.len())]);
    }
    Plate::parse(&out.iter().collect::<String>()).unwrap_or(plate)
}

pub fn random_tag<R: Rng>(rng: &mut R) -> String {
    format!("E200{:016X}", rng.random::<u64>())
}

/// Class mix of private and commercial traffic (route buses come from the timetable).
pub fn random_class<R: Rng>(rng: &mut R) -> VehicleClass {
    match rng.random_range(0..1000) {
        0..740 => VehicleClass::Car,
        740..860 => VehicleClass::Taxi,
        860..940 => VehicleClass::Truck,
        940..950 => VehicleClass::Hazmat,
        950..975 => VehicleClass::Coach,
        975..985 => VehicleClass::SchoolBus,
        _ => VehicleClass::Motorcycle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn plates_are_valid_and_misreads_differ_by_one_character() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let p = random_plate(&mut rng);
            assert!(matches!(p.char_count(), 7 | 8));
            let m = misread(&mut rng, p);
            let diff = p.as_str().chars().zip(m.as_str().chars()).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 1, "{p} vs {m}");
        }
    }
}
