// SPDX-License-Identifier: Apache-2.0
/*
 * json_dom.cpp - the C API of json_dom.h over simdjson's DOM parser. The
 * parse itself (grammar, UTF-8, escapes, numbers, depth) is simdjson's;
 * this file adds what jansson rejected and simdjson does not (duplicate
 * keys, NUL in keys, integers between INT64_MAX and UINT64_MAX) in one
 * walk over the parsed document, and keeps parsers alive per thread.
 *
 * Concurrency & locking: nothing is shared. A scratch belongs to one
 * caller at a time; the per-thread cache is thread_local, and its
 * destructor frees the cached scratch when the thread ends. No C++
 * exception crosses into C: allocation failures become -ENOMEM.
 */
#include "json_dom.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <type_traits>
#include <vector>

#include <simdjson.h>

namespace dom = simdjson::dom;

namespace
{

/* jansson's JSON_PARSER_MAX_DEPTH: 2048 levels parse, 2049 do not. */
constexpr size_t jdom_max_depth = 2048;
/* First capacity of a parser; it grows with the largest document seen. */
constexpr size_t jdom_first_capacity = 8192;
/* A scratch that grew for documents larger than this is not cached. */
constexpr size_t jdom_keep_capacity = 256 * 1024;
/* Objects with at most this many keys are checked for duplicates
 * pairwise; larger ones are sorted. */
constexpr size_t jdom_pairwise_keys = 16;

static_assert(JDOM_PADDING >= simdjson::SIMDJSON_PADDING, "padding too small for simdjson");
static_assert(sizeof(dom::element) <= sizeof(jdom_value::opaque) &&
		      std::is_trivially_copyable<dom::element>::value,
	      "dom::element does not fit struct jdom_value");
static_assert(2 * sizeof(dom::array::iterator) <= sizeof(jdom_iter::opaque) &&
		      std::is_trivially_copyable<dom::array::iterator>::value,
	      "dom::array::iterator does not fit struct jdom_iter");

/* An open container during the walk. */
struct jdom_frame {
	bool object;
	dom::object::iterator oit, oend;
	dom::array::iterator ait, aend;
};

dom::element jdom_get(const jdom_value *v)
{
	dom::element e;
	std::memcpy(static_cast<void *>(&e), v->opaque, sizeof(e));
	return e;
}

void jdom_put(jdom_value *v, const dom::element &e)
{
	std::memset(v->opaque, 0, sizeof(v->opaque));
	std::memcpy(v->opaque, static_cast<const void *>(&e), sizeof(e));
}

/* Valid JSON that jansson refused: told apart by its address. */
const char jdom_too_big[] = "too big integer";

} // namespace

struct jdom_parser {
	dom::parser parser;
	std::vector<jdom_frame> stack;
	std::vector<std::string_view> keys;

	/* The checks jansson makes and simdjson does not, for one object:
	 * its keys are collected once into `keys`. */
	const char *check_keys(const dom::object &o)
	{
		keys.clear();
		for (auto it = o.begin(); it != o.end(); ++it) {
			std::string_view k = it.key();
			if (std::memchr(k.data(), '\0', k.size()))
				return "NUL byte in object key not supported";
			keys.push_back(k);
		}
		if (keys.size() <= jdom_pairwise_keys) {
			for (size_t i = 1; i < keys.size(); i++)
				for (size_t j = 0; j < i; j++)
					if (keys[i] == keys[j])
						return "duplicate object key";
			return nullptr;
		}
		std::sort(keys.begin(), keys.end());
		if (std::adjacent_find(keys.begin(), keys.end()) != keys.end())
			return "duplicate object key";
		return nullptr;
	}

	/* One value met in the walk: containers are checked and opened. */
	const char *visit(const dom::element &e)
	{
		switch (e.type()) {
		case dom::element_type::OBJECT: {
			dom::object o;
			if (e.get_object().get(o))
				return "internal error: not an object";
			if (const char *why = check_keys(o))
				return why;
			stack.push_back(jdom_frame{true, o.begin(), o.end(), {}, {}});
			return nullptr;
		}
		case dom::element_type::ARRAY: {
			dom::array a;
			if (e.get_array().get(a))
				return "internal error: not an array";
			stack.push_back(jdom_frame{false, {}, {}, a.begin(), a.end()});
			return nullptr;
		}
		case dom::element_type::UINT64:
			return jdom_too_big;
		default:
			return nullptr;
		}
	}

	/* Depth first without recursion: a document may nest 2048 deep. */
	const char *walk(const dom::element &root)
	{
		stack.clear();
		if (const char *why = visit(root))
			return why;
		while (!stack.empty()) {
			jdom_frame &f = stack.back();
			dom::element next;
			if (f.object) {
				if (!(f.oit != f.oend)) {
					stack.pop_back();
					continue;
				}
				next = f.oit.value();
				++f.oit;
			} else {
				if (!(f.ait != f.aend)) {
					stack.pop_back();
					continue;
				}
				next = *f.ait;
				++f.ait;
			}
			/* `f` may move: visit() can grow the stack. */
			if (const char *why = visit(next))
				return why;
		}
		return nullptr;
	}

	size_t capacity() const
	{
		return parser.capacity();
	}
};

struct jdom_scratch {
	jdom_parser parsers[JDOM_PARSERS];
	std::unique_ptr<unsigned char[]> buf;
	size_t buf_cap = 0;

	size_t capacity() const
	{
		size_t c = buf_cap;
		for (const auto &p : parsers)
			c = std::max(c, p.capacity());
		return c;
	}
};

namespace
{

/* The calling thread's spare scratch, freed when the thread ends. */
struct jdom_cache {
	jdom_scratch *spare = nullptr;
	jdom_cache() = default;
	jdom_cache(const jdom_cache &) = delete;
	jdom_cache &operator=(const jdom_cache &) = delete;
	~jdom_cache()
	{
		delete spare;
	}
};

thread_local jdom_cache jdom_cached;

} // namespace

extern "C" {

struct jdom_scratch *jdom_scratch_take(void)
{
	jdom_scratch *s = jdom_cached.spare;
	if (s) {
		jdom_cached.spare = nullptr;
		return s;
	}
	s = new (std::nothrow) jdom_scratch;
	if (!s)
		return nullptr;
	for (auto &p : s->parsers) {
		if (p.parser.allocate(jdom_first_capacity, jdom_max_depth) != simdjson::SUCCESS) {
			delete s;
			return nullptr;
		}
	}
	return s;
}

void jdom_scratch_give(struct jdom_scratch *s)
{
	if (!s)
		return;
	if (jdom_cached.spare || s->capacity() > jdom_keep_capacity) {
		delete s;
		return;
	}
	jdom_cached.spare = s;
}

struct jdom_parser *jdom_scratch_parser(struct jdom_scratch *s, unsigned i)
{
	return i < JDOM_PARSERS ? &s->parsers[i] : nullptr;
}

unsigned char *jdom_scratch_buffer(struct jdom_scratch *s, size_t len)
{
	if (len > SIZE_MAX - JDOM_PADDING)
		return nullptr;
	if (!s->buf || s->buf_cap < len) {
		/* Some headroom: sizes vary a little from message to message. */
		size_t cap = len < SIZE_MAX / 2 - JDOM_PADDING ? len + len / 4 : len;
		/* Zeroed, padding included: simdjson reads the padding, and its
		 * maintainers ask for it to be initialised (memcheck reports
		 * every parse otherwise). Later messages only overwrite it. */
		std::unique_ptr<unsigned char[]> b(
			new (std::nothrow) unsigned char[cap + JDOM_PADDING]());
		if (!b)
			return nullptr;
		s->buf = std::move(b);
		s->buf_cap = cap;
	}
	return s->buf.get();
}

int jdom_parse(struct jdom_parser *p, const char *data, size_t len, bool padded,
	       struct jdom_value *root, const char **why)
{
	dom::element e;
	*why = nullptr;
	try {
		simdjson::error_code err = p->parser.parse(data, len, !padded).get(e);
		if (err == simdjson::MEMALLOC)
			return -ENOMEM;
		if (err) {
			*why = simdjson::error_message(err);
			return -EBADMSG;
		}
		*why = p->walk(e);
	} catch (const std::bad_alloc &) {
		return -ENOMEM;
	}
	if (*why)
		return *why == jdom_too_big ? -ERANGE : -EBADMSG;
	jdom_put(root, e);
	return 0;
}

enum jdom_type jdom_type(const struct jdom_value *v)
{
	switch (jdom_get(v).type()) {
	case dom::element_type::OBJECT:
		return JDOM_OBJECT;
	case dom::element_type::ARRAY:
		return JDOM_ARRAY;
	case dom::element_type::STRING:
		return JDOM_STRING;
	case dom::element_type::INT64:
		return JDOM_INTEGER;
	case dom::element_type::BOOL:
		return JDOM_BOOL;
	case dom::element_type::NULL_VALUE:
		return JDOM_NULL;
	case dom::element_type::DOUBLE:
	case dom::element_type::UINT64: /* refused by jdom_parse() */
		break;
	}
	return JDOM_REAL;
}

bool jdom_member(const struct jdom_value *obj, const char *key, struct jdom_value *out)
{
	dom::object o;
	dom::element e;
	if (jdom_get(obj).get_object().get(o) || o.at_key(key).get(e))
		return false;
	jdom_put(out, e);
	return true;
}

void jdom_string(const struct jdom_value *v, const char **s, size_t *n)
{
	std::string_view sv;
	if (jdom_get(v).get_string().get(sv)) {
		*s = "";
		*n = 0;
		return;
	}
	*s = sv.data();
	*n = sv.size();
}

int64_t jdom_integer(const struct jdom_value *v)
{
	int64_t i = 0;
	if (jdom_get(v).get_int64().get(i))
		return 0;
	return i;
}

bool jdom_utf8_valid(const char *s, size_t n)
{
	return simdjson::validate_utf8(s, n);
}

bool jdom_bool(const struct jdom_value *v)
{
	bool b = false;
	if (jdom_get(v).get_bool().get(b))
		return false;
	return b;
}

double jdom_number(const struct jdom_value *v)
{
	dom::element e = jdom_get(v);
	double d = 0;
	int64_t i = 0;
	if (e.type() == dom::element_type::INT64)
		return e.get_int64().get(i) ? 0 : static_cast<double>(i);
	if (e.get_double().get(d))
		return 0;
	return d;
}

bool jdom_array_first(const struct jdom_value *arr, struct jdom_iter *it, struct jdom_value *out)
{
	dom::array a;
	std::memset(it->opaque, 0, sizeof(it->opaque));
	if (jdom_get(arr).get_array().get(a))
		return false;
	dom::array::iterator pos[2] = {a.begin(), a.end()};
	std::memcpy(it->opaque, static_cast<const void *>(pos), sizeof(pos));
	return jdom_array_next(it, out);
}

bool jdom_array_next(struct jdom_iter *it, struct jdom_value *out)
{
	dom::array::iterator pos[2];
	std::memcpy(static_cast<void *>(pos), it->opaque, sizeof(pos));
	if (!(pos[0] != pos[1]))
		return false;
	jdom_put(out, *pos[0]);
	++pos[0];
	std::memcpy(it->opaque, static_cast<const void *>(pos), sizeof(pos));
	return true;
}

} // extern "C"
