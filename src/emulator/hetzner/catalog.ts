/** The emulator's catalogue: locations, server types with prices, images. Plain data, replaceable. */

export interface CatalogLocation {
  id: number;
  name: string;
  description: string;
  country: string;
  city: string;
  latitude: number;
  longitude: number;
  network_zone: string;
  datacenter: { id: number; name: string; description: string };
}

/** A type's offer in one location, as `server_type.locations[]` reports it. */
export interface CatalogTypeLocation {
  name: string;
  /** False: temporarily sold out there. */
  available: boolean;
  /** Set when the type is being phased out there (unavailable for good after unavailable_after). */
  deprecation: { announced: string; unavailable_after: string } | null;
}

export interface CatalogServerType {
  id: number;
  name: string;
  description: string;
  cores: number;
  /** GB */
  memory: number;
  /** GB */
  disk: number;
  cpu_type: "shared" | "dedicated";
  architecture: "x86" | "arm";
  category: string;
  /** The type's own (deprecated) flag: true once it is phased out everywhere. */
  deprecated: boolean;
  /** Net EUR prices in the EU locations; `prices` overrides them per location. */
  hourly: string;
  monthly: string;
  /** Net EUR prices per location where they differ from hourly/monthly (the US and Singapore). */
  prices?: Record<string, { hourly: string; monthly: string }>;
  /** Locations where the type is offered. */
  locations: CatalogTypeLocation[];
}

export interface CatalogImage {
  id: number;
  name: string;
  description: string;
  os_flavor: "debian" | "ubuntu" | "fedora" | "rocky" | "alma" | "centos" | "opensuse" | "unknown";
  os_version: string;
  architecture: "x86" | "arm";
  disk_size: number;
}

export interface Catalog {
  /** VAT rate as a decimal string, e.g. "19.000000". */
  vatRate: string;
  locations: CatalogLocation[];
  serverTypes: CatalogServerType[];
  images: CatalogImage[];
  /** Primary IPv4 net price per location (the same everywhere here). */
  primaryIpv4: { hourly: string; monthly: string };
  /** Snapshots and backups: net EUR per GB and month of image_size. */
  imagePerGbMonth: string;
}

const EU = ["fsn1", "nbg1", "hel1"];
const ALL = ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];
/** Hetzner's 2025 phase-out of the 2024 line: announced 2025-10-16, not orderable after 2025-12-31. */
const PHASE_OUT = { announced: "2025-10-16T00:00:00+00:00", unavailable_after: "2025-12-31T23:59:59+00:00" };
const at = (names: string[], soldOut: string[] = []): CatalogTypeLocation[] =>
  names.map((name) => ({ name, available: !soldOut.includes(name), deprecation: null }));
const phasedOut = (names: string[]): CatalogTypeLocation[] =>
  names.map((name) => ({ name, available: false, deprecation: PHASE_OUT }));
/** Outside the EU the shared and dedicated x86 types cost about a fifth more. */
const dearerAbroad = (hourly: string, monthly: string) =>
  Object.fromEntries(
    ["ash", "hil", "sin"].map((l) => [
      l,
      { hourly: (Number(hourly) * 1.2).toFixed(4), monthly: (Number(monthly) * 1.2).toFixed(4) },
    ]),
  );

type Line = [
  id: number,
  name: string,
  cores: number,
  memory: number,
  disk: number,
  hourly: string,
  monthly: string,
];
const family = (
  rows: Line[],
  o: Pick<CatalogServerType, "cpu_type" | "architecture" | "category"> & {
    locations: () => CatalogTypeLocation[];
    abroad?: boolean;
    describe: (name: string) => string;
  },
): CatalogServerType[] =>
  rows.map(([id, name, cores, memory, disk, hourly, monthly]) => {
    const locations = o.locations();
    return {
      id,
      name,
      description: o.describe(name),
      cores,
      memory,
      disk,
      cpu_type: o.cpu_type,
      architecture: o.architecture,
      category: o.category,
      deprecated: locations.every((l) => l.deprecation !== null),
      hourly,
      monthly,
      ...(o.abroad ? { prices: dearerAbroad(hourly, monthly) } : {}),
      locations,
    };
  });
const upper = (name: string) => name.toUpperCase();

/**
 * Hetzner's line as of 2026-12 (vCPU / GB RAM / GB disk from the API; prices net EUR, close to
 * the public list, which changed several times in 2026): cx23–cx53, cpx12–cpx62, cax11–cax41,
 * ccx13–ccx33; the 2024 types (cx22–cx52, cpx11–cpx51) listed as phased out in every location.
 */
const SERVER_TYPES: CatalogServerType[] = [
  ...family(
    [
      [114, "cx23", 2, 4, 40, "0.0060", "3.7900"],
      [115, "cx33", 4, 8, 80, "0.0109", "6.8000"],
      [116, "cx43", 8, 16, 160, "0.0263", "16.4000"],
      [117, "cx53", 16, 32, 320, "0.0519", "32.4000"],
    ],
    {
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      locations: () => at(EU),
      describe: upper,
    },
  ),
  ...family(
    [
      [108, "cpx12", 1, 2, 40, "0.0070", "4.3500"],
      [109, "cpx22", 2, 4, 80, "0.0121", "7.5500"],
      [110, "cpx32", 4, 8, 160, "0.0218", "13.6000"],
      [111, "cpx42", 8, 16, 320, "0.0403", "25.2000"],
      [112, "cpx52", 12, 24, 480, "0.0586", "36.4900"],
      [113, "cpx62", 16, 32, 640, "0.0879", "54.9000"],
    ],
    {
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      locations: () => at(ALL),
      abroad: true,
      describe: upper,
    },
  ),
  ...family(
    [
      [45, "cax11", 2, 4, 40, "0.0060", "3.7900"],
      [93, "cax21", 4, 8, 80, "0.0104", "6.4900"],
      [94, "cax31", 8, 16, 160, "0.0208", "12.9900"],
      [95, "cax41", 16, 32, 320, "0.0408", "25.4900"],
    ],
    {
      cpu_type: "shared",
      architecture: "arm",
      category: "cost_optimized",
      locations: () => at(EU),
      describe: upper,
    },
  ),
  ...family(
    [
      [96, "ccx13", 2, 8, 80, "0.0200", "12.4900"],
      [97, "ccx23", 4, 16, 160, "0.0392", "24.4900"],
      [98, "ccx33", 8, 32, 240, "0.0777", "48.4900"],
    ],
    {
      cpu_type: "dedicated",
      architecture: "x86",
      category: "general_purpose",
      locations: () => at(ALL),
      abroad: true,
      describe: (n) => `${upper(n)} Dedicated CPU`,
    },
  ),
  ...family(
    [
      [104, "cx22", 2, 4, 40, "0.0060", "3.7900"],
      [105, "cx32", 4, 8, 80, "0.0109", "6.8000"],
      [106, "cx42", 8, 16, 160, "0.0263", "16.4000"],
      [107, "cx52", 16, 32, 320, "0.0519", "32.4000"],
    ],
    {
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      locations: () => phasedOut(EU),
      describe: upper,
    },
  ),
  ...family(
    [
      [22, "cpx11", 2, 2, 40, "0.0070", "4.3500"],
      [23, "cpx21", 3, 4, 80, "0.0121", "7.5500"],
      [24, "cpx31", 4, 8, 160, "0.0218", "13.6000"],
      [25, "cpx41", 8, 16, 240, "0.0403", "25.2000"],
      [26, "cpx51", 16, 32, 360, "0.0879", "54.9000"],
    ],
    {
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      locations: () => phasedOut(ALL),
      abroad: true,
      describe: (n) => `CPX ${n.slice(3)}`,
    },
  ),
];
// cx33 is sold out in Helsinki (a temporary shortage, not a phase-out).
for (const l of SERVER_TYPES.find((t) => t.name === "cx33")?.locations ?? []) {
  if (l.name === "hel1") l.available = false;
}

/** A catalogue close to Hetzner's public one (prices net EUR, as of 2026-12). */
export const defaultCatalog: Catalog = {
  vatRate: "19.000000",
  primaryIpv4: { hourly: "0.0008", monthly: "0.5000" },
  imagePerGbMonth: "0.0110",
  locations: [
    {
      id: 1,
      name: "fsn1",
      description: "Falkenstein DC Park 1",
      country: "DE",
      city: "Falkenstein",
      latitude: 50.47612,
      longitude: 12.370071,
      network_zone: "eu-central",
      datacenter: { id: 4, name: "fsn1-dc14", description: "Falkenstein 1 virtual DC 14" },
    },
    {
      id: 2,
      name: "nbg1",
      description: "Nuremberg DC Park 1",
      country: "DE",
      city: "Nuremberg",
      latitude: 49.452102,
      longitude: 11.076665,
      network_zone: "eu-central",
      datacenter: { id: 2, name: "nbg1-dc3", description: "Nuremberg 1 virtual DC 3" },
    },
    {
      id: 3,
      name: "hel1",
      description: "Helsinki DC Park 1",
      country: "FI",
      city: "Helsinki",
      latitude: 60.169855,
      longitude: 24.938379,
      network_zone: "eu-central",
      datacenter: { id: 3, name: "hel1-dc2", description: "Helsinki 1 virtual DC 2" },
    },
    {
      id: 4,
      name: "ash",
      description: "Ashburn, VA",
      country: "US",
      city: "Ashburn, VA",
      latitude: 39.045821,
      longitude: -77.487073,
      network_zone: "us-east",
      datacenter: { id: 5, name: "ash-dc1", description: "Ashburn virtual DC 1" },
    },
    {
      id: 5,
      name: "hil",
      description: "Hillsboro, OR",
      country: "US",
      city: "Hillsboro, OR",
      latitude: 45.54222,
      longitude: -122.95103,
      network_zone: "us-west",
      datacenter: { id: 6, name: "hil-dc1", description: "Hillsboro virtual DC 1" },
    },
    {
      id: 6,
      name: "sin",
      description: "Singapore",
      country: "SG",
      city: "Singapore",
      latitude: 1.283333,
      longitude: 103.833333,
      network_zone: "ap-southeast",
      datacenter: { id: 7, name: "sin-dc1", description: "Singapore virtual DC 1" },
    },
  ],
  serverTypes: SERVER_TYPES,
  images: [
    {
      id: 114690387,
      name: "debian-12",
      description: "Debian 12",
      os_flavor: "debian",
      os_version: "12",
      architecture: "x86",
      disk_size: 5,
    },
    {
      id: 114690389,
      name: "debian-12",
      description: "Debian 12",
      os_flavor: "debian",
      os_version: "12",
      architecture: "arm",
      disk_size: 5,
    },
    {
      id: 161547269,
      name: "ubuntu-24.04",
      description: "Ubuntu 24.04",
      os_flavor: "ubuntu",
      os_version: "24.04",
      architecture: "x86",
      disk_size: 5,
    },
    {
      id: 67794396,
      name: "ubuntu-22.04",
      description: "Ubuntu 22.04",
      os_flavor: "ubuntu",
      os_version: "22.04",
      architecture: "x86",
      disk_size: 5,
    },
  ],
};
