// primes: counts the primes below n with a sieve of Eratosthenes (CPU-bound).
// Input: params as JSON, e.g. {"n": 10000} (or a bare number). Output: {"n":10000,"primes":1229}
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long parse_n(const char *in) {
  const char *key = strstr(in, "\"n\"");
  const char *p = key ? key + 3 : in;
  while (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '"') p++;
  char *end;
  long n = strtol(p, &end, 10);
  return end == p ? -1 : n;
}

int main(void) {
  char in[4096];
  size_t len = fread(in, 1, sizeof in - 1, stdin);
  in[len] = 0;
  long n = len == 0 ? 10000 : parse_n(in);
  if (n < 0 || n > 100000000) {
    fprintf(stderr, "primes: expected {\"n\": N} with 0 <= N <= 100000000, got: %s\n", in);
    return 2;
  }
  unsigned char *composite = calloc(n > 2 ? n : 2, 1);
  if (!composite) {
    fprintf(stderr, "primes: out of memory for n=%ld\n", n);
    return 3;
  }
  long count = 0;
  for (long i = 2; i < n; i++) {
    if (composite[i]) continue;
    count++;
    if (i > n / i) continue;
    for (long j = i * i; j < n; j += i) composite[j] = 1;
  }
  printf("{\"n\":%ld,\"primes\":%ld}\n", n, count);
  return 0;
}
