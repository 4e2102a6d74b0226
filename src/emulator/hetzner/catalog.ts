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
  deprecated: boolean;
  /** Net EUR prices; the same in every location listed. */
  hourly: string;
  monthly: string;
  /** Locations where the type is offered; `available: false` means sold out there. */
  locations: { name: string; available: boolean }[];
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
}

const EU = ["fsn1", "nbg1", "hel1"];
const ALL = ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];
const at = (names: string[], soldOut: string[] = []) =>
  names.map((name) => ({ name, available: !soldOut.includes(name) }));

/** A catalogue close to Hetzner's public one (prices net EUR, as of 2026-01). */
export const defaultCatalog: Catalog = {
  vatRate: "19.000000",
  primaryIpv4: { hourly: "0.0008", monthly: "0.5000" },
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
  serverTypes: [
    {
      id: 1,
      name: "cx11",
      description: "CX11",
      cores: 1,
      memory: 2,
      disk: 20,
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      deprecated: true,
      hourly: "0.0050",
      monthly: "3.2900",
      locations: at(EU),
    },
    {
      id: 104,
      name: "cx22",
      description: "CX22",
      cores: 2,
      memory: 4,
      disk: 40,
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      deprecated: false,
      hourly: "0.0060",
      monthly: "3.7900",
      locations: at(EU),
    },
    {
      id: 105,
      name: "cx32",
      description: "CX32",
      cores: 4,
      memory: 8,
      disk: 80,
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      deprecated: false,
      hourly: "0.0109",
      monthly: "6.8000",
      locations: at(EU, ["hel1"]),
    },
    {
      id: 106,
      name: "cx42",
      description: "CX42",
      cores: 8,
      memory: 16,
      disk: 160,
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      deprecated: false,
      hourly: "0.0263",
      monthly: "16.4000",
      locations: at(EU),
    },
    {
      id: 107,
      name: "cx52",
      description: "CX52",
      cores: 16,
      memory: 32,
      disk: 320,
      cpu_type: "shared",
      architecture: "x86",
      category: "cost_optimized",
      deprecated: false,
      hourly: "0.0519",
      monthly: "32.4000",
      locations: at(EU),
    },
    {
      id: 22,
      name: "cpx11",
      description: "CPX 11",
      cores: 2,
      memory: 2,
      disk: 40,
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      deprecated: false,
      hourly: "0.0070",
      monthly: "4.3500",
      locations: at(ALL),
    },
    {
      id: 23,
      name: "cpx21",
      description: "CPX 21",
      cores: 3,
      memory: 4,
      disk: 80,
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      deprecated: false,
      hourly: "0.0121",
      monthly: "7.5500",
      locations: at(ALL),
    },
    {
      id: 24,
      name: "cpx31",
      description: "CPX 31",
      cores: 4,
      memory: 8,
      disk: 160,
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      deprecated: false,
      hourly: "0.0218",
      monthly: "13.6000",
      locations: at(ALL),
    },
    {
      id: 25,
      name: "cpx41",
      description: "CPX 41",
      cores: 8,
      memory: 16,
      disk: 240,
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      deprecated: false,
      hourly: "0.0403",
      monthly: "25.2000",
      locations: at(ALL),
    },
    {
      id: 26,
      name: "cpx51",
      description: "CPX 51",
      cores: 16,
      memory: 32,
      disk: 360,
      cpu_type: "shared",
      architecture: "x86",
      category: "regular_purpose",
      deprecated: false,
      hourly: "0.0879",
      monthly: "54.9000",
      locations: at(ALL),
    },
    {
      id: 45,
      name: "cax11",
      description: "CAX11",
      cores: 2,
      memory: 4,
      disk: 40,
      cpu_type: "shared",
      architecture: "arm",
      category: "cost_optimized",
      deprecated: false,
      hourly: "0.0060",
      monthly: "3.7900",
      locations: at(["fsn1", "nbg1", "hel1"]),
    },
    {
      id: 96,
      name: "ccx13",
      description: "CCX13 Dedicated CPU",
      cores: 2,
      memory: 8,
      disk: 80,
      cpu_type: "dedicated",
      architecture: "x86",
      category: "general_purpose",
      deprecated: false,
      hourly: "0.0200",
      monthly: "12.4900",
      locations: at(ALL),
    },
    {
      id: 97,
      name: "ccx23",
      description: "CCX23 Dedicated CPU",
      cores: 4,
      memory: 16,
      disk: 160,
      cpu_type: "dedicated",
      architecture: "x86",
      category: "general_purpose",
      deprecated: false,
      hourly: "0.0392",
      monthly: "24.4900",
      locations: at(ALL),
    },
    {
      id: 98,
      name: "ccx33",
      description: "CCX33 Dedicated CPU",
      cores: 8,
      memory: 32,
      disk: 240,
      cpu_type: "dedicated",
      architecture: "x86",
      category: "general_purpose",
      deprecated: false,
      hourly: "0.0777",
      monthly: "48.4900",
      locations: at(ALL),
    },
  ],
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
