/*
 * kernelgolden: bucket/slot -> destination tables and client decisions of
 * the Linux IPVS dh, sh and mh schedulers, computed from the algorithms of
 * net/netfilter/ipvs/ip_vs_dh.c, ip_vs_sh.c, ip_vs_mh.c, lib/siphash.c
 * (64-bit hsiphash = SipHash-1-3) and include/linux/hash.h (hash_32),
 * independently of xlb's Go code. It is
 * written from the kernel's structure: destinations on a linked list with
 * new ones inserted at the head (list_add_rcu in __ip_vs_update_dest),
 * tables filled by walking that list.
 *
 * Rebuild the golden file from the repository root with:
 *
 *   gcc -O2 -Wall -o /tmp/kernelgolden sched/testdata/kernelgolden.c &&
 *       /tmp/kernelgolden > sched/testdata/kernel_golden.txt
 *
 * It must run on a little-endian machine (the kernel hashes the u32 in
 * memory) and it checks its SipHash against lib/test_siphash.c first.
 *
 * Output, one record per line:
 *   case <sched> <name> <table size> <flags>
 *   dest <addr> <port> <weight> <last_weight> <overloaded 0|1>   (list order)
 *   table <dest index per bucket/slot, -1 for none ...>
 *   pick <proto> <client addr> <client port> <dest index or -1>
 *   end
 * Flags are IP_VS_SVC_F_SCHED1 (8, fallback) and SCHED2 (16, port).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F_FALLBACK 8
#define F_PORT 16

struct dest {
	char name[64];
	int v6;
	uint32_t w[4]; /* network order words, as union nf_inet_addr */
	uint16_t port;
	int weight, last_weight, overload;
	struct dest *next;
};

static struct dest *list;   /* newest first */
static struct dest *dests[64];
static int ndests;

static int index_of(struct dest *d)
{
	int i = 0;
	struct dest *p;

	if (!d)
		return -1;
	for (p = list; p; p = p->next, i++)
		if (p == d)
			return i;
	abort();
}

static void parse_addr(const char *s, int *v6, uint32_t w[4])
{
	memset(w, 0, 16);
	if (strchr(s, ':')) {
		*v6 = 1;
		if (inet_pton(AF_INET6, s, w) != 1)
			abort();
	} else {
		*v6 = 0;
		if (inet_pton(AF_INET, s, w) != 1)
			abort();
	}
}

/* ipvsadm -a: insert at the head of the service's list. */
static void add(const char *addr, int port, int weight, int last_weight, int overload)
{
	struct dest *d = calloc(1, sizeof(*d));

	snprintf(d->name, sizeof(d->name), "%s", addr);
	parse_addr(addr, &d->v6, d->w);
	d->port = port;
	d->weight = weight;
	d->last_weight = last_weight;
	d->overload = overload;
	d->next = list;
	list = d;
	dests[ndests++] = d;
}

static void reset(void)
{
	while (list) {
		struct dest *n = list->next;
		free(list);
		list = n;
	}
	ndests = 0;
}

static uint32_t fold(int v6, const uint32_t w[4])
{
	return ntohl(v6 ? w[0] ^ w[1] ^ w[2] ^ w[3] : w[0]);
}

/*
 * hash_32 of include/linux/hash.h (the generic version; no architecture
 * overrides it on x86 or arm64): the top bits of the product with
 * GOLDEN_RATIO_32, in u32 arithmetic. ip_vs_dh_hashkey and
 * ip_vs_sh_hashkey use it with IP_VS_DH_TAB_BITS / IP_VS_SH_TAB_BITS = 8.
 */
#define GOLDEN_RATIO_32 0x61C88647u

static uint32_t hash_32(uint32_t val, unsigned int bits)
{
	return (uint32_t)(val * GOLDEN_RATIO_32) >> (32 - bits);
}

static void begin(const char *sched, const char *name, int size, int flags)
{
	struct dest *p;

	printf("case %s %s %d %d\n", sched, name, size, flags);
	for (p = list; p; p = p->next)
		printf("dest %s %u %d %d %d\n", p->name, p->port, p->weight, p->last_weight, p->overload);
}

/* ---- SipHash-1-3 over bytes (the 64-bit kernel's hsiphash) ---- */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define ROUND do { \
	v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32); \
	v2 += v3; v3 = rotl(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = rotl(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32); \
} while (0)

static uint32_t sip13(const uint8_t *in, size_t len, uint64_t k0, uint64_t k1)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = (uint64_t)len << 56, m;
	size_t i, blocks = len / 8;

	for (i = 0; i < blocks; i++) {
		int j;

		m = 0;
		for (j = 0; j < 8; j++)
			m |= (uint64_t)in[8 * i + j] << (8 * j);
		v3 ^= m;
		ROUND;
		v0 ^= m;
	}
	for (i = 0; i < len % 8; i++)
		b |= (uint64_t)in[8 * blocks + i] << (8 * i);
	v3 ^= b;
	ROUND;
	v0 ^= b;
	v2 ^= 0xff;
	ROUND;
	ROUND;
	ROUND;
	return (uint32_t)(v0 ^ v1 ^ v2 ^ v3);
}

/* hsiphash(&v, sizeof(v), key) with key->key[0] = key->key[1] = k. */
static uint32_t hsip_u32(unsigned int v, uint64_t k)
{
	uint8_t buf[4];

	memcpy(buf, &v, 4);
	return sip13(buf, 4, k, k);
}

static void self_test(void)
{
	/* lib/test_siphash.c test_vectors_hsiphash, BITS_PER_LONG == 64 */
	static const uint32_t want[] = {
		0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328,
		0x49533b67, 0xc59f22a7, 0x9bb11140, 0x8d299a8e, 0x6c063de4,
	};
	uint8_t in[16];
	unsigned int i, one = 1;

	if (*(unsigned char *)&one != 1) {
		fprintf(stderr, "kernelgolden: needs a little-endian machine\n");
		exit(1);
	}
	for (i = 0; i < 16; i++)
		in[i] = i;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		uint32_t got = sip13(in, i, 0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL);

		if (got != want[i]) {
			fprintf(stderr, "kernelgolden: hsiphash vector %u = %08x, want %08x\n", i, got, want[i]);
			exit(1);
		}
	}
}

/* ---- dh ---- */

static struct dest *dh_tab[256];

static void dh_assign(void)
{
	struct dest *p = NULL;
	int i;

	for (i = 0; i < 256; i++) {
		if (!list) {
			dh_tab[i] = NULL;
			continue;
		}
		if (!p)
			p = list;
		dh_tab[i] = p;
		p = p->next;
	}
}

static int dh_pick(const char *daddr)
{
	uint32_t w[4];
	int v6;
	struct dest *d;

	parse_addr(daddr, &v6, w);
	d = dh_tab[hash_32(fold(v6, w), 8)];
	if (!d || d->weight <= 0 || d->overload)
		return -1;
	return index_of(d);
}

/* ---- sh ---- */

static struct dest *sh_tab[256];

static void sh_reassign(void)
{
	struct dest *p = NULL;
	int i, d_count = 0;

	for (i = 0; i < 256; i++) {
		if (!list) {
			sh_tab[i] = NULL;
			continue;
		}
		if (!p)
			p = list;
		sh_tab[i] = p;
		if (++d_count >= p->weight) {
			p = p->next;
			d_count = 0;
		}
	}
}

static unsigned int sh_hashkey(uint32_t addrfold, uint16_t port, unsigned int offset)
{
	return (offset + hash_32((uint32_t)port + addrfold, 8)) & 255;
}

static int sh_unavailable(struct dest *d) { return d->weight <= 0 || d->overload; }

static int sh_pick(int flags, int proto, const char *saddr, int sport)
{
	uint32_t w[4], af;
	int v6;
	uint16_t port = 0;
	unsigned int ihash, offset;
	struct dest *d;

	parse_addr(saddr, &v6, w);
	af = fold(v6, w);
	if ((flags & F_PORT) && (proto == 6 || proto == 17 || proto == 132))
		port = sport;
	ihash = sh_hashkey(af, port, 0);
	d = sh_tab[ihash];
	if (!(flags & F_FALLBACK))
		return (!d || sh_unavailable(d)) ? -1 : index_of(d);
	if (!d)
		return -1;
	if (!sh_unavailable(d))
		return index_of(d);
	for (offset = 0; offset < 256; offset++) {
		unsigned int roffset = (offset + ihash) % 256;

		d = sh_tab[sh_hashkey(af, port, roffset)];
		if (!d)
			break;
		if (!sh_unavailable(d))
			return index_of(d);
	}
	return -1;
}

/* ---- mh ---- */

#define MH_KEY1 2654435761ULL
#define MH_KEY2 2654446892ULL

static const int primes[] = {251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071};
static struct dest *mh_tab[131071];
static int mh_size, mh_bits;

static unsigned int mh_hashkey(uint32_t addrfold, uint16_t port, uint64_t key, unsigned int offset)
{
	unsigned int v = offset + port + addrfold;

	return hsip_u32(v, key);
}

static int gcd(int a, int b)
{
	while (b) {
		int t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static int fls32(unsigned int x)
{
	int n = 0;

	while (x) {
		n++;
		x >>= 1;
	}
	return n;
}

static void mh_build(int size)
{
	struct {
		unsigned int offset, skip, perm;
		int turns;
	} setup[64];
	static unsigned char taken[131071];
	struct dest *p;
	int g = 0, maxw = 0, rshift, i, n, dt_count;

	mh_size = size;
	for (i = 0; i < 10; i++)
		if (primes[i] == size)
			mh_bits = (i + 8) / 2;
	for (p = list; p; p = p->next) {
		if (p->last_weight > 0)
			g = g > 0 ? gcd(p->last_weight, g) : p->last_weight;
		if (p->last_weight > maxw)
			maxw = p->last_weight;
	}
	memset(mh_tab, 0, sizeof(mh_tab));
	if (g < 1)
		return;
	rshift = fls32(maxw / g) - mh_bits;
	if (rshift < 0)
		rshift = 0;
	for (p = list, i = 0; p; p = p->next, i++) {
		uint32_t af = fold(p->v6, p->w);
		int t;

		setup[i].offset = mh_hashkey(af, p->port, MH_KEY1, 0) % size;
		setup[i].skip = mh_hashkey(af, p->port, MH_KEY2, 0) % (size - 1) + 1;
		setup[i].perm = setup[i].offset;
		t = (p->last_weight / g) >> rshift;
		setup[i].turns = t ? t : (p->last_weight != 0);
	}
	memset(taken, 0, sizeof(taken));
	n = 0;
	dt_count = 0;
	p = NULL;
	while (n < size) {
		int k = 0;

		for (p = list; p; ) {
			unsigned int c;

			if (setup[k].turns < 1) {
				p = p->next;
				k++;
				continue;
			}
			c = setup[k].perm;
			while (taken[c]) {
				setup[k].perm += setup[k].skip;
				if (setup[k].perm >= (unsigned int)size)
					setup[k].perm -= size;
				c = setup[k].perm;
			}
			taken[c] = 1;
			mh_tab[c] = p;
			if (++n == size)
				return;
			if (++dt_count >= setup[k].turns) {
				dt_count = 0;
				p = p->next;
				k++;
			}
		}
	}
}

static int mh_unavailable(struct dest *d) { return d->weight <= 0 || d->overload; }

static int mh_pick(int flags, int proto, const char *saddr, int sport)
{
	uint32_t w[4], af;
	int v6;
	uint16_t port = 0;
	unsigned int ihash, offset;
	struct dest *d;

	parse_addr(saddr, &v6, w);
	af = fold(v6, w);
	if ((flags & F_PORT) && (proto == 6 || proto == 17 || proto == 132))
		port = sport;
	ihash = mh_hashkey(af, port, MH_KEY1, 0) % mh_size;
	d = mh_tab[ihash];
	if (!(flags & F_FALLBACK))
		return (!d || mh_unavailable(d)) ? -1 : index_of(d);
	if (!d)
		return -1;
	if (!mh_unavailable(d))
		return index_of(d);
	for (offset = 0; offset < (unsigned int)mh_size; offset++) {
		unsigned int roffset = (offset + ihash) % mh_size;

		d = mh_tab[mh_hashkey(af, port, MH_KEY1, roffset) % mh_size];
		if (!d)
			break;
		if (!mh_unavailable(d))
			return index_of(d);
	}
	return -1;
}

/* ---- cases ---- */

static void print_table(struct dest **tab, int size)
{
	int i;

	printf("table");
	for (i = 0; i < size; i++)
		printf(" %d", index_of(tab[i]));
	printf("\n");
}

/* A deterministic spread of client addresses and ports. */
static void client(int i, int v6, char *buf, size_t len, int *port, int *proto)
{
	uint32_t x = 2654435761u * (uint32_t)(i + 1);

	if (v6)
		snprintf(buf, len, "2001:db8:%x:%x::%x", x >> 16, i, x & 0xffff);
	else
		snprintf(buf, len, "%u.%u.%u.%u", 1 + (x >> 24) % 223, (x >> 16) & 255, (x >> 8) & 255, x & 255);
	*port = 1024 + (x % 64000);
	*proto = (i % 7 == 6) ? 1 : (i % 2 ? 17 : 6); /* some ICMP: port not hashed */
}

static void picks(int (*pick)(int, int, const char *, int), int flags, int n)
{
	char addr[64];
	int i, port, proto;

	for (i = 0; i < n; i++) {
		client(i, i % 5 == 4, addr, sizeof(addr), &port, &proto);
		printf("pick %d %s %d %d\n", proto, addr, port, pick(flags, proto, addr, port));
	}
}

static int dh_pick3(int flags, int proto, const char *daddr, int port)
{
	(void)flags;
	(void)proto;
	(void)port;
	return dh_pick(daddr);
}

int main(void)
{
	int flags;

	self_test();

	/* dh: weights ignored in the table; weight 0 and overload refuse. */
	reset();
	add("10.1.0.1", 80, 1, 1, 0);
	add("10.1.0.2", 80, 0, 3, 0);
	add("10.1.0.3", 8080, 5, 5, 0);
	add("10.1.0.4", 80, 2, 2, 1);
	add("10.1.0.5", 80, 1, 1, 0);
	dh_assign();
	begin("dh", "five", 256, 0);
	print_table(dh_tab, 256);
	picks(dh_pick3, 0, 200);
	printf("end\n");

	/* sh: weight-proportional buckets, a weight-0 and an overloaded one. */
	for (flags = 0; flags <= (F_FALLBACK | F_PORT); flags += F_FALLBACK) {
		char name[32];

		reset();
		add("10.2.0.1", 80, 3, 3, 0);
		add("10.2.0.2", 80, 1, 1, 0);
		add("10.2.0.3", 80, 0, 4, 0);
		add("10.2.0.4", 80, 2, 2, 1);
		add("2001:db8::5", 443, 5, 5, 0);
		sh_reassign();
		snprintf(name, sizeof(name), "mixed-flags%d", flags);
		begin("sh", name, 256, flags);
		print_table(sh_tab, 256);
		picks(sh_pick, flags, 300);
		printf("end\n");
	}
	reset();
	add("10.3.0.1", 80, 1, 1, 0);
	add("10.3.0.2", 80, 2, 2, 0);
	add("10.3.0.3", 80, 3, 3, 0);
	add("10.3.0.4", 80, 4, 4, 0);
	add("10.3.0.5", 80, 5, 5, 0);
	add("10.3.0.6", 80, 6, 6, 0);
	add("10.3.0.7", 80, 7, 7, 0);
	sh_reassign();
	begin("sh", "weights1to7", 256, 0);
	print_table(sh_tab, 256);
	picks(sh_pick, 0, 100);
	printf("end\n");

	/* mh, M = 251 (IP_VS_MH_TAB_BITS 4): a weight edited to 0 keeps its
	 * slots, one added with weight 0 gets none. */
	for (flags = 0; flags <= (F_FALLBACK | F_PORT); flags += F_FALLBACK) {
		char name[32];

		reset();
		add("10.4.0.1", 80, 1, 1, 0);
		add("10.4.0.2", 80, 2, 2, 0);
		add("10.4.0.3", 80, 3, 3, 1);
		add("10.4.0.4", 80, 0, 2, 0);
		add("10.4.0.5", 8080, 1, 1, 0);
		add("10.4.0.6", 80, 0, 0, 0);
		mh_build(251);
		snprintf(name, sizeof(name), "small-flags%d", flags);
		begin("mh", name, 251, flags);
		print_table(mh_tab, 251);
		picks(mh_pick, flags, 300);
		printf("end\n");
	}

	/* mh, default M = 4093: large weights (rshift 4 with mw/gcd = 999),
	 * IPv6 destinations. */
	reset();
	add("10.5.0.1", 80, 999, 999, 0);
	add("10.5.0.2", 80, 100, 100, 0);
	add("2001:db8:5::3", 80, 37, 37, 0);
	add("10.5.0.4", 443, 1, 1, 0);
	add("10.5.0.5", 80, 500, 500, 0);
	add("2001:db8:5::6", 8443, 250, 250, 0);
	add("10.5.0.7", 80, 64, 64, 0);
	mh_build(4093);
	begin("mh", "default-weights", 4093, F_FALLBACK | F_PORT);
	print_table(mh_tab, 4093);
	picks(mh_pick, F_FALLBACK | F_PORT, 300);
	printf("end\n");

	/* mh, M = 1021, ten equal destinations. */
	reset();
	add("192.168.7.1", 80, 1, 1, 0);
	add("192.168.7.2", 80, 1, 1, 0);
	add("192.168.7.3", 80, 1, 1, 0);
	add("192.168.7.4", 80, 1, 1, 0);
	add("192.168.7.5", 80, 1, 1, 0);
	add("192.168.7.6", 80, 1, 1, 0);
	add("192.168.7.7", 80, 1, 1, 0);
	add("192.168.7.8", 80, 1, 1, 0);
	add("192.168.7.9", 80, 1, 1, 0);
	add("192.168.7.10", 80, 1, 1, 0);
	mh_build(1021);
	begin("mh", "ten-equal", 1021, 0);
	print_table(mh_tab, 1021);
	picks(mh_pick, 0, 100);
	printf("end\n");
	reset();
	return 0;
}
