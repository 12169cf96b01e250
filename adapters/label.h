/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Names modules give the host (loss reasons, connection names) are kept in
 * fixed-size fields. A longer name is cut to fit, at a UTF-8 character
 * boundary so that the metrics stay valid UTF-8, and every lookup cuts it
 * the same way, so that one name always finds its one entry.
 */
#ifndef CAD_LABEL_H
#define CAD_LABEL_H

#include <string.h>

/* Copy `src` into dst[size] (size >= 1), cut as above. */
static inline void label_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size);
	if (n == size) {
		n = size - 1;
		/* Back over continuation bytes to the start of the cut character. */
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

#endif
