//! Places: the cities users live in (and far-away ones for the geo fraud pattern), with their
//! time zones, and per country the currency, language, phone prefix and home IP ranges.
//! Every string is plain JSON-safe text.

/// Daylight-saving rule of a place (approximated by month: April to October).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dst {
    None,
    North,
}

/// A place users live in (or a fraudster's far-away place).
#[derive(Debug)]
pub struct City {
    pub country: &'static str,
    pub state: &'static str,
    pub city: &'static str,
    pub zip: &'static str,
    pub lat: &'static str,
    pub lon: &'static str,
    /// Standard UTC offset in minutes.
    pub tz: i32,
    pub dst: Dst,
    /// Share of the user base (per mille-ish weights); 0 for fraud-only places.
    pub weight: u32,
}

macro_rules! city {
    ($c:expr, $s:expr, $n:expr, $z:expr, $la:expr, $lo:expr, $tz:expr, $d:ident, $w:expr) => {
        City {
            country: $c,
            state: $s,
            city: $n,
            zip: $z,
            lat: $la,
            lon: $lo,
            tz: $tz,
            dst: Dst::$d,
            weight: $w,
        }
    };
}

#[rustfmt::skip]
pub static CITIES: &[City] = &[
    city!("US", "NY", "New York", "10001", "40.7128", "-74.0060", -300, North, 60),
    city!("US", "CA", "San Francisco", "94105", "37.7749", "-122.4194", -480, North, 30),
    city!("US", "CA", "Los Angeles", "90012", "34.0522", "-118.2437", -480, North, 50),
    city!("US", "CA", "San Diego", "92101", "32.7157", "-117.1611", -480, North, 18),
    city!("US", "IL", "Chicago", "60601", "41.8781", "-87.6298", -360, North, 35),
    city!("US", "TX", "Houston", "77002", "29.7604", "-95.3698", -360, North, 28),
    city!("US", "TX", "Austin", "73301", "30.2672", "-97.7431", -360, North, 18),
    city!("US", "TX", "Dallas", "75201", "32.7767", "-96.7970", -360, North, 24),
    city!("US", "AZ", "Phoenix", "85004", "33.4484", "-112.0740", -420, None, 20),
    city!("US", "PA", "Philadelphia", "19103", "39.9526", "-75.1652", -300, North, 20),
    city!("US", "WA", "Seattle", "98101", "47.6062", "-122.3321", -480, North, 22),
    city!("US", "CO", "Denver", "80202", "39.7392", "-104.9903", -420, North, 16),
    city!("US", "MA", "Boston", "02108", "42.3601", "-71.0589", -300, North, 20),
    city!("US", "FL", "Miami", "33130", "25.7617", "-80.1918", -300, North, 22),
    city!("US", "FL", "Orlando", "32801", "28.5383", "-81.3792", -300, North, 12),
    city!("US", "GA", "Atlanta", "30303", "33.7490", "-84.3880", -300, North, 20),
    city!("US", "NC", "Charlotte", "28202", "35.2271", "-80.8431", -300, North, 12),
    city!("US", "OH", "Columbus", "43215", "39.9612", "-82.9988", -300, North, 12),
    city!("US", "MI", "Detroit", "48226", "42.3314", "-83.0458", -300, North, 12),
    city!("US", "MN", "Minneapolis", "55401", "44.9778", "-93.2650", -360, North, 12),
    city!("US", "OR", "Portland", "97204", "45.5152", "-122.6784", -480, North, 12),
    city!("US", "NV", "Las Vegas", "89101", "36.1699", "-115.1398", -480, North, 10),
    city!("US", "TN", "Nashville", "37203", "36.1627", "-86.7816", -360, North, 10),
    city!("US", "DC", "Washington", "20001", "38.9072", "-77.0369", -300, North, 12),
    city!("CA", "ON", "Toronto", "M5H 2N2", "43.6532", "-79.3832", -300, North, 30),
    city!("CA", "ON", "Ottawa", "K1P 1J1", "45.4215", "-75.6972", -300, North, 8),
    city!("CA", "BC", "Vancouver", "V6B 1A1", "49.2827", "-123.1207", -480, North, 16),
    city!("CA", "QC", "Montreal", "H2Y 1C6", "45.5017", "-73.5673", -300, North, 14),
    city!("CA", "AB", "Calgary", "T2P 1J9", "51.0447", "-114.0719", -420, North, 10),
    city!("GB", "ENG", "London", "EC1A 1BB", "51.5074", "-0.1278", 0, North, 60),
    city!("GB", "ENG", "Manchester", "M1 1AE", "53.4808", "-2.2426", 0, North, 16),
    city!("GB", "ENG", "Birmingham", "B1 1BB", "52.4862", "-1.8904", 0, North, 14),
    city!("GB", "ENG", "Bristol", "BS1 4DJ", "51.4545", "-2.5879", 0, North, 8),
    city!("GB", "SCT", "Edinburgh", "EH1 1YZ", "55.9533", "-3.1883", 0, North, 8),
    city!("GB", "SCT", "Glasgow", "G1 1XQ", "55.8642", "-4.2518", 0, North, 8),
    city!("DE", "BE", "Berlin", "10115", "52.5200", "13.4050", 60, North, 30),
    city!("DE", "BY", "Munich", "80331", "48.1351", "11.5820", 60, North, 20),
    city!("DE", "HH", "Hamburg", "20095", "53.5511", "9.9937", 60, North, 16),
    city!("DE", "HE", "Frankfurt", "60311", "50.1109", "8.6821", 60, North, 12),
    city!("DE", "NW", "Cologne", "50667", "50.9375", "6.9603", 60, North, 12),
    city!("FR", "IDF", "Paris", "75001", "48.8566", "2.3522", 60, North, 36),
    city!("FR", "ARA", "Lyon", "69001", "45.7640", "4.8357", 60, North, 12),
    city!("FR", "PAC", "Marseille", "13001", "43.2965", "5.3698", 60, North, 10),
    city!("FR", "OCC", "Toulouse", "31000", "43.6047", "1.4442", 60, North, 8),
    city!("ES", "MD", "Madrid", "28013", "40.4168", "-3.7038", 60, North, 14),
    city!("ES", "CT", "Barcelona", "08002", "41.3874", "2.1686", 60, North, 12),
    city!("IT", "LM", "Milan", "20121", "45.4642", "9.1900", 60, North, 12),
    city!("IT", "LZ", "Rome", "00184", "41.9028", "12.4964", 60, North, 12),
    city!("NL", "NH", "Amsterdam", "1012 JS", "52.3676", "4.9041", 60, North, 12),
    city!("IE", "D", "Dublin", "D02 XY45", "53.3498", "-6.2603", 0, North, 8),
    city!("AU", "NSW", "Sydney", "2000", "-33.8688", "151.2093", 600, None, 8),
    city!("AU", "VIC", "Melbourne", "3000", "-37.8136", "144.9631", 600, None, 6),
    city!("JP", "13", "Tokyo", "100-0001", "35.6762", "139.6503", 540, None, 6),
    city!("MX", "CMX", "Mexico City", "06000", "19.4326", "-99.1332", -360, None, 6),
    // far-away places used only by the geo fraud pattern (weight 0)
    city!("RU", "MOW", "Moscow", "101000", "55.7558", "37.6173", 180, None, 0),
    city!("NG", "LA", "Lagos", "100001", "6.5244", "3.3792", 60, None, 0),
    city!("BR", "SP", "Sao Paulo", "01000-000", "-23.5505", "-46.6333", -180, None, 0),
    city!("RO", "B", "Bucharest", "010011", "44.4268", "26.1025", 120, North, 0),
    city!("VN", "SG", "Ho Chi Minh City", "700000", "10.8231", "106.6297", 420, None, 0),
    city!("ID", "JK", "Jakarta", "10110", "-6.2088", "106.8456", 420, None, 0),
    city!("UA", "30", "Kyiv", "01001", "50.4501", "30.5234", 120, North, 0),
];

/// Per country: currency, language, phone prefix, first octets of its home IP addresses.
pub struct Country {
    pub code: &'static str,
    pub currency: &'static str,
    pub language: &'static str,
    pub phone: &'static str,
    pub octets: &'static [u8],
}

#[rustfmt::skip]
const NA_OCTETS: &[u8] = &[24, 50, 63, 64, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 96, 97, 98];
const EU_OCTETS: &[u8] = &[
    2, 5, 31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 86, 87, 88, 90,
];
const AP_OCTETS: &[u8] = &[1, 14, 27, 36, 49, 58, 101, 110, 121, 126, 175, 180];
const LA_OCTETS: &[u8] = &[177, 179, 186, 187, 189, 200, 201];

#[rustfmt::skip]
pub static COUNTRIES: &[Country] = &[
    Country { code: "US", currency: "USD", language: "en", phone: "+1", octets: NA_OCTETS },
    Country { code: "CA", currency: "CAD", language: "en", phone: "+1", octets: NA_OCTETS },
    Country { code: "GB", currency: "GBP", language: "en", phone: "+44", octets: EU_OCTETS },
    Country { code: "DE", currency: "EUR", language: "de", phone: "+49", octets: EU_OCTETS },
    Country { code: "FR", currency: "EUR", language: "fr", phone: "+33", octets: EU_OCTETS },
    Country { code: "ES", currency: "EUR", language: "es", phone: "+34", octets: EU_OCTETS },
    Country { code: "IT", currency: "EUR", language: "it", phone: "+39", octets: EU_OCTETS },
    Country { code: "NL", currency: "EUR", language: "nl", phone: "+31", octets: EU_OCTETS },
    Country { code: "IE", currency: "EUR", language: "en", phone: "+353", octets: EU_OCTETS },
    Country { code: "AU", currency: "AUD", language: "en", phone: "+61", octets: AP_OCTETS },
    Country { code: "JP", currency: "JPY", language: "ja", phone: "+81", octets: AP_OCTETS },
    Country { code: "MX", currency: "MXN", language: "es", phone: "+52", octets: LA_OCTETS },
    Country { code: "RU", currency: "RUB", language: "ru", phone: "+7", octets: &[] },
    Country { code: "NG", currency: "NGN", language: "en", phone: "+234", octets: &[] },
    Country { code: "BR", currency: "BRL", language: "pt", phone: "+55", octets: &[] },
    Country { code: "RO", currency: "RON", language: "ro", phone: "+40", octets: &[] },
    Country { code: "VN", currency: "VND", language: "vi", phone: "+84", octets: &[] },
    Country { code: "ID", currency: "IDR", language: "id", phone: "+62", octets: &[] },
    Country { code: "UA", currency: "UAH", language: "uk", phone: "+380", octets: &[] },
];

pub fn country(code: &str) -> &'static Country {
    COUNTRIES
        .iter()
        .find(|c| c.code == code)
        .unwrap_or(&COUNTRIES[0])
}

/// Per-mille exchange rates from USD for the currencies the generator knows; others are 1:1.
pub fn usd_rate_permille(currency: &str) -> i64 {
    match currency {
        "EUR" => 920,
        "GBP" => 790,
        "CAD" => 1360,
        "AUD" => 1500,
        "JPY" => 157_000,
        "MXN" => 18_000,
        "CHF" => 900,
        "SEK" => 10_500,
        _ => 1000,
    }
}
