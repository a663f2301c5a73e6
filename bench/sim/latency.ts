import type { Random } from './random.js'

/** A city agents gather around, and its share of them. */
interface City { name: string, region: string, lat: number, lon: number, weight: number }

/** Where edge devices would be: a handful of metro areas on four continents, weighted roughly by population online. */
const CITIES: readonly City[] = [
  { name: 'frankfurt', region: 'eu', lat: 50.11, lon: 8.68, weight: 3 },
  { name: 'london', region: 'eu', lat: 51.51, lon: -0.13, weight: 3 },
  { name: 'madrid', region: 'eu', lat: 40.42, lon: -3.7, weight: 1 },
  { name: 'virginia', region: 'us', lat: 38.9, lon: -77.04, weight: 3 },
  { name: 'chicago', region: 'us', lat: 41.88, lon: -87.63, weight: 2 },
  { name: 'oregon', region: 'us', lat: 45.52, lon: -122.68, weight: 2 },
  { name: 'sao-paulo', region: 'sa', lat: -23.55, lon: -46.63, weight: 1 },
  { name: 'mumbai', region: 'ap', lat: 19.08, lon: 72.88, weight: 1 },
  { name: 'singapore', region: 'ap', lat: 1.35, lon: 103.82, weight: 2 },
  { name: 'tokyo', region: 'ap', lat: 35.68, lon: 139.69, weight: 2 },
  { name: 'sydney', region: 'ap', lat: -33.87, lon: 151.21, weight: 1 }
]

const EARTH_KM = 6371
/** Light in fibre, ~2/3 c: km per ms. */
const FIBRE_KM_PER_MS = 200
/** Agents of a city are spread over this radius (a metro area and its surroundings). */
const SPREAD_KM = 150

/**
 * A generated geographic latency model: each node sits near a city, on a sphere, with its own
 * access latency (the last mile: Ethernet, Wi-Fi, LTE). One-way latency between two nodes is both
 * access latencies plus the great-circle distance at ~2/3 c (no routing detours, so long paths are
 * somewhat optimistic). Computed on demand from O(N) state: an N×N matrix of 10,000 would be
 * 800 MB.
 */
export class Geography {
  readonly #x: Float64Array
  readonly #y: Float64Array
  readonly #z: Float64Array
  readonly #accessMs: Float64Array
  readonly #city: Uint8Array

  constructor (n: number, random: Random) {
    this.#x = new Float64Array(n)
    this.#y = new Float64Array(n)
    this.#z = new Float64Array(n)
    this.#accessMs = new Float64Array(n)
    this.#city = new Uint8Array(n)
    const total = CITIES.reduce((s, c) => s + c.weight, 0)
    for (let i = 0; i < n; i++) {
      let r = random.next() * total
      let c = 0
      for (; c < CITIES.length - 1; c++) {
        r -= (CITIES[c] as City).weight
        if (r < 0) break
      }
      const city = CITIES[c] as City
      // A point within SPREAD_KM of the city (small-angle offset; fine away from the poles).
      const d = SPREAD_KM * Math.sqrt(random.next()) / EARTH_KM
      const a = 2 * Math.PI * random.next()
      const lat = city.lat * Math.PI / 180 + d * Math.cos(a)
      const lon = city.lon * Math.PI / 180 + d * Math.sin(a) / Math.cos(city.lat * Math.PI / 180)
      this.#x[i] = Math.cos(lat) * Math.cos(lon)
      this.#y[i] = Math.cos(lat) * Math.sin(lon)
      this.#z[i] = Math.sin(lat)
      // 0.5 ms (wired) to ~20 ms (a busy radio link), most a few ms.
      this.#accessMs[i] = Math.min(20, 0.5 + random.exp(2.5))
      this.#city[i] = c
    }
  }

  /** One-way latency in ms from node a to node b (symmetric). */
  oneWayMs (a: number, b: number): number {
    if (a === b) return 0
    const dot = (this.#x[a] as number) * (this.#x[b] as number) + (this.#y[a] as number) * (this.#y[b] as number) + (this.#z[a] as number) * (this.#z[b] as number)
    const km = EARTH_KM * Math.acos(Math.max(-1, Math.min(1, dot)))
    return (this.#accessMs[a] as number) + (this.#accessMs[b] as number) + km / FIBRE_KM_PER_MS
  }

  rttMs (a: number, b: number): number {
    return 2 * this.oneWayMs(a, b)
  }

  city (i: number): string {
    return (CITIES[this.#city[i] as number] as City).name
  }

  region (i: number): string {
    return (CITIES[this.#city[i] as number] as City).region
  }
}
