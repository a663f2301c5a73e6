// A node function: the sieve of Eratosthenes. Input {"n": 10000} (the default).
module.exports = async (params) => {
  const n = Number(params?.n ?? 10000)
  if (!Number.isInteger(n) || n < 2 || n > 50_000_000) throw new Error('n must be an integer from 2 to 50000000')
  const composite = new Uint8Array(n)
  let count = 0
  for (let i = 2; i < n; i++) {
    if (composite[i] === 1) continue
    count++
    for (let j = i * i; j < n; j += i) composite[j] = 1
  }
  return `Found ${count} primes under ${n}`
}
