//! Static reference data: catalog vocabulary, devices, payments, marketing, names (places are
//! in `places`).
//! Every string here is plain JSON-safe text (no quotes, no backslashes, no control characters),
//! so the record writers copy it without escaping.

pub use super::places::*;

/// A subcategory of the catalog with its nouns and USD price range (whole dollars).
pub struct Sub {
    pub name: &'static str,
    pub slug: &'static str,
    pub nouns: &'static [&'static str],
    pub lo: u32,
    pub hi: u32,
}

pub struct Category {
    pub id: &'static str,
    pub name: &'static str,
    pub slug: &'static str,
    pub brands: &'static [&'static str],
    pub subs: &'static [Sub],
    pub weight: u32,
}

macro_rules! sub {
    ($n:expr, $s:expr, [$($w:expr),*], $lo:expr, $hi:expr) => {
        Sub { name: $n, slug: $s, nouns: &[$($w),*], lo: $lo, hi: $hi }
    };
}

#[rustfmt::skip]
pub static CATEGORIES: &[Category] = &[
    Category {
        id: "C01", name: "Electronics", slug: "electronics", weight: 22,
        brands: &["Apple", "Samsung", "Sony", "Dell", "Lenovo", "Bose", "Anker", "Logitech", "LG", "Canon"],
        subs: &[
            sub!("Laptops", "laptops", ["Laptop", "Ultrabook", "Gaming Laptop", "Chromebook"], 299, 2899),
            sub!("Phones", "phones", ["Smartphone", "Phone Case", "Screen Protector"], 9, 1299),
            sub!("Audio", "audio", ["Wireless Headphones", "Earbuds", "Bluetooth Speaker", "Soundbar"], 19, 499),
            sub!("Cameras", "cameras", ["Mirrorless Camera", "Action Camera", "Camera Lens"], 149, 2499),
            sub!("Accessories", "accessories", ["USB-C Charger", "Power Bank", "Wireless Mouse", "Keyboard"], 9, 149),
        ],
    },
    Category {
        id: "C02", name: "Home & Kitchen", slug: "home-kitchen", weight: 16,
        brands: &["KitchenAid", "Cuisinart", "OXO", "Dyson", "Ninja", "IKEA", "Le Creuset", "Instant Pot"],
        subs: &[
            sub!("Cookware", "cookware", ["Nonstick Pan", "Dutch Oven", "Knife Set", "Saucepan"], 19, 399),
            sub!("Appliances", "appliances", ["Blender", "Air Fryer", "Espresso Machine", "Stand Mixer"], 39, 699),
            sub!("Furniture", "furniture", ["Office Chair", "Bookshelf", "Coffee Table", "Desk"], 59, 899),
            sub!("Bedding", "bedding", ["Duvet Cover", "Pillow Set", "Weighted Blanket"], 19, 249),
        ],
    },
    Category {
        id: "C03", name: "Clothing", slug: "clothing", weight: 18,
        brands: &["Nike", "Adidas", "Levi's", "Uniqlo", "Zara", "H&M", "Patagonia", "The North Face"],
        subs: &[
            sub!("Men", "men", ["T-Shirt", "Jeans", "Hoodie", "Chinos", "Rain Jacket"], 12, 249),
            sub!("Women", "women", ["Dress", "Blouse", "Leggings", "Cardigan", "Puffer Jacket"], 12, 279),
            sub!("Kids", "kids", ["Kids T-Shirt", "Kids Sneakers", "Pajama Set"], 8, 89),
            sub!("Shoes", "shoes", ["Running Shoes", "Sneakers", "Hiking Boots", "Sandals"], 29, 229),
        ],
    },
    Category {
        id: "C04", name: "Sports & Outdoors", slug: "sports-outdoors", weight: 9,
        brands: &["Wilson", "Coleman", "Garmin", "Yeti", "Under Armour", "Peloton", "Osprey"],
        subs: &[
            sub!("Fitness", "fitness", ["Yoga Mat", "Dumbbell Set", "Resistance Bands", "Fitness Tracker"], 14, 399),
            sub!("Camping", "camping", ["Tent", "Sleeping Bag", "Camping Stove", "Backpack"], 24, 449),
            sub!("Cycling", "cycling", ["Bike Helmet", "Bike Light", "Cycling Gloves"], 14, 189),
        ],
    },
    Category {
        id: "C05", name: "Beauty", slug: "beauty", weight: 9,
        brands: &["L'Oreal", "Neutrogena", "CeraVe", "Maybelline", "Clinique", "Olaplex", "Dove"],
        subs: &[
            sub!("Skincare", "skincare", ["Moisturizer", "Face Serum", "Sunscreen SPF 50", "Cleanser"], 6, 89),
            sub!("Makeup", "makeup", ["Mascara", "Foundation", "Lipstick", "Eyeshadow Palette"], 5, 69),
            sub!("Haircare", "haircare", ["Shampoo", "Conditioner", "Hair Dryer", "Hair Oil"], 5, 299),
        ],
    },
    Category {
        id: "C06", name: "Books", slug: "books", weight: 8,
        brands: &["Penguin", "HarperCollins", "Random House", "Scholastic", "O'Reilly", "Macmillan"],
        subs: &[
            sub!("Fiction", "fiction", ["Mystery Novel", "Fantasy Novel", "Thriller", "Romance Novel"], 7, 29),
            sub!("Non-fiction", "non-fiction", ["Biography", "Cookbook", "History Book", "Self-Help Book"], 9, 39),
            sub!("Children", "children", ["Picture Book", "Activity Book", "Young Adult Novel"], 5, 19),
        ],
    },
    Category {
        id: "C07", name: "Toys & Games", slug: "toys-games", weight: 7,
        brands: &["LEGO", "Hasbro", "Mattel", "Ravensburger", "Nintendo", "Melissa & Doug"],
        subs: &[
            sub!("Building Sets", "building-sets", ["Building Set", "Construction Kit"], 9, 249),
            sub!("Board Games", "board-games", ["Board Game", "Card Game", "Jigsaw Puzzle"], 9, 69),
            sub!("Video Games", "video-games", ["Video Game", "Game Controller", "Console Bundle"], 19, 549),
        ],
    },
    Category {
        id: "C08", name: "Garden", slug: "garden", weight: 5,
        brands: &["Scotts", "Fiskars", "Weber", "Gardena", "Miracle-Gro"],
        subs: &[
            sub!("Tools", "tools", ["Pruning Shears", "Garden Hose", "Leaf Blower"], 12, 299),
            sub!("Grills", "grills", ["Charcoal Grill", "Gas Grill", "Grill Cover"], 29, 999),
            sub!("Plants", "plants", ["Potting Soil", "Seed Kit", "Planter"], 5, 59),
        ],
    },
    Category {
        id: "C09", name: "Grocery", slug: "grocery", weight: 4,
        brands: &["Lavazza", "Nespresso", "Twinings", "KIND", "Lindt", "Starbucks"],
        subs: &[
            sub!("Coffee & Tea", "coffee-tea", ["Coffee Beans", "Coffee Pods", "Green Tea"], 5, 45),
            sub!("Snacks", "snacks", ["Protein Bars", "Dark Chocolate", "Trail Mix"], 3, 29),
        ],
    },
    Category {
        id: "C10", name: "Pet Supplies", slug: "pet-supplies", weight: 4,
        brands: &["Purina", "Kong", "Blue Buffalo", "Petmate", "Furbo"],
        subs: &[
            sub!("Dogs", "dogs", ["Dog Food", "Dog Bed", "Chew Toy", "Leash"], 6, 129),
            sub!("Cats", "cats", ["Cat Food", "Cat Tree", "Litter Box"], 5, 149),
        ],
    },
];

pub static ADJECTIVES: &[&str] = &[
    "Classic",
    "Pro",
    "Ultra",
    "Compact",
    "Premium",
    "Essential",
    "Smart",
    "Eco",
    "Lite",
    "Max",
    "Deluxe",
    "Everyday",
    "Studio",
    "Travel",
    "Signature",
    "Active",
];

pub static TAGS: &[&str] = &[
    "bestseller",
    "new",
    "sale",
    "eco",
    "premium",
    "limited",
    "gift",
    "clearance",
    "trending",
];

/// A device as the streams describe it.
pub struct Device {
    pub kind: &'static str,
    pub os: &'static str,
    pub browser: &'static str,
    pub user_agent: &'static str,
    pub screen: &'static str,
    pub viewport: &'static str,
    pub weight: u32,
}

macro_rules! dev {
    ($k:expr, $o:expr, $b:expr, $ua:expr, $s:expr, $v:expr, $w:expr) => {
        Device {
            kind: $k,
            os: $o,
            browser: $b,
            user_agent: $ua,
            screen: $s,
            viewport: $v,
            weight: $w,
        }
    };
}

#[rustfmt::skip]
pub static DEVICES: &[Device] = &[
    dev!("desktop", "Windows", "Chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0", "1920x1080", "1536x730", 22),
    dev!("desktop", "Windows", "Edge", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/126.0", "1920x1080", "1600x790", 7),
    dev!("desktop", "Windows", "Firefox", "Mozilla/5.0 (Windows NT 10.0; rv:127.0) Firefox/127.0", "2560x1440", "1920x960", 4),
    dev!("desktop", "macOS", "Safari", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1", "2560x1600", "1440x789", 8),
    dev!("desktop", "macOS", "Chrome", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Chrome/126.0", "1440x900", "1280x720", 6),
    dev!("desktop", "Linux", "Firefox", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Firefox/127.0", "1920x1080", "1850x950", 2),
    dev!("mobile", "iOS", "Safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1", "1179x2556", "393x659", 24),
    dev!("mobile", "Android", "Chrome", "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile", "1080x2400", "412x915", 18),
    dev!("mobile", "Android", "Samsung Internet", "Mozilla/5.0 (Linux; Android 14; SM-S918B) SamsungBrowser/25.0", "1440x3088", "384x832", 5),
    dev!("tablet", "iPadOS", "Safari", "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) Safari/604.1", "2048x2732", "1024x1292", 3),
    dev!("tablet", "Android", "Chrome", "Mozilla/5.0 (Linux; Android 13; SM-X710) Chrome/126.0", "1600x2560", "800x1180", 1),
];

/// Payment methods with their providers; the weights depend on the region.
pub struct Payment {
    pub method: &'static str,
    pub providers: &'static [&'static str],
    /// Weights for North America, Europe, elsewhere.
    pub weights: [u32; 3],
}

#[rustfmt::skip]
pub static PAYMENTS: &[Payment] = &[
    Payment { method: "credit_card", providers: &["stripe", "adyen", "braintree"], weights: [46, 30, 50] },
    Payment { method: "debit_card", providers: &["stripe", "adyen"], weights: [14, 18, 15] },
    Payment { method: "paypal", providers: &["paypal"], weights: [18, 20, 15] },
    Payment { method: "apple_pay", providers: &["stripe", "adyen"], weights: [10, 8, 8] },
    Payment { method: "google_pay", providers: &["stripe", "adyen"], weights: [5, 4, 6] },
    Payment { method: "klarna", providers: &["klarna"], weights: [3, 10, 1] },
    Payment { method: "bank_transfer", providers: &["plaid", "sofort", "ideal"], weights: [1, 8, 3] },
    Payment { method: "gift_card", providers: &["internal"], weights: [3, 2, 2] },
];

/// Marketing channels with their referrers.
pub struct Channel {
    pub name: &'static str,
    pub referrers: &'static [&'static str],
    /// Whether a campaign id is usual for the channel.
    pub campaigns: bool,
    pub weight: u32,
}

#[rustfmt::skip]
pub static CHANNELS: &[Channel] = &[
    Channel { name: "organic", referrers: &["google.com", "bing.com", "duckduckgo.com"], campaigns: false, weight: 30 },
    Channel { name: "google_ads", referrers: &["google.com"], campaigns: true, weight: 18 },
    Channel { name: "facebook_ads", referrers: &["facebook.com", "m.facebook.com"], campaigns: true, weight: 10 },
    Channel { name: "instagram", referrers: &["instagram.com"], campaigns: true, weight: 7 },
    Channel { name: "tiktok", referrers: &["tiktok.com"], campaigns: true, weight: 4 },
    Channel { name: "email", referrers: &["newsletter", "mail.google.com"], campaigns: true, weight: 12 },
    Channel { name: "affiliate", referrers: &["wirecutter.com", "rtings.com", "slickdeals.net"], campaigns: true, weight: 8 },
    Channel { name: "direct", referrers: &[], campaigns: false, weight: 11 },
];

pub static CAMPAIGNS: &[&str] = &[
    "summer_sale_2024",
    "prime_days_2024",
    "back_to_school_2024",
    "newsletter_weekly",
    "retargeting_q3",
    "brand_awareness_q3",
    "free_shipping_promo",
    "loyalty_rewards",
    "black_friday_2024",
    "holiday_gifts_2024",
];

pub static FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Sophie",
    "Oliver",
    "Emma",
    "Lukas",
    "Lena",
    "Hugo",
    "Chloe",
    "Lucia",
    "Mateo",
    "Giulia",
    "Marco",
    "Sanne",
    "Daan",
    "Aoife",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Yuki",
    "Haruto",
    "Isabella",
    "Santiago",
    "Amelia",
    "Jack",
    "Charlotte",
    "Leon",
    "Mia",
    "Louis",
];

pub static LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martinez",
    "Taylor",
    "Wilson",
    "Anderson",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Clark",
    "Lewis",
    "Walker",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Dubois",
    "Moreau",
    "Rossi",
    "Russo",
    "Fernandez",
    "Lopez",
    "de Vries",
    "Jansen",
    "Murphy",
    "O'Brien",
    "Kelly",
    "Tanaka",
    "Sato",
    "Hernandez",
    "Wright",
];

pub static EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "hotmail.com",
    "proton.me",
    "gmx.de",
    "web.de",
    "orange.fr",
    "example.com",
];

pub static STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Park Rd",
    "High St",
    "Station Rd",
    "Church Ln",
    "Elm St",
    "Cedar Ct",
    "Lake View",
    "Mill Rd",
    "King St",
];

pub static TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];

/// Page titles and categories of behavior event types.
pub fn event_category(event_type: &str) -> &'static str {
    match event_type {
        "page_view" | "search" => "navigation",
        "product_view" => "engagement",
        "add_to_cart" | "remove_from_cart" => "cart",
        "checkout_start" => "conversion",
        _ => "engagement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_safe(s: &str) -> bool {
        !s.chars().any(|c| c == '"' || c == '\\' || c.is_control())
    }

    #[test]
    fn static_strings_need_no_escaping() {
        for c in CITIES {
            for s in [c.country, c.state, c.city, c.zip, c.lat, c.lon] {
                assert!(json_safe(s), "{s}");
            }
            assert!(
                COUNTRIES.iter().any(|k| k.code == c.country),
                "{}",
                c.country
            );
        }
        for cat in CATEGORIES {
            assert!(cat.brands.iter().all(|b| json_safe(b)));
            for s in cat.subs {
                assert!(s.nouns.iter().all(|n| json_safe(n)) && s.lo < s.hi);
            }
        }
        for d in DEVICES {
            assert!(json_safe(d.user_agent));
        }
        for list in [
            FIRST_NAMES,
            LAST_NAMES,
            STREETS,
            ADJECTIVES,
            CAMPAIGNS,
            EMAIL_DOMAINS,
        ] {
            assert!(list.iter().all(|s| json_safe(s)));
        }
    }
}
