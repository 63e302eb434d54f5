// CMallocCounter: counts heap allocations in the benchmark executable.
//
// Linking this target into an executable replaces malloc and its relatives
// for the whole process (the executable's definitions win over libc's), so a
// benchmark can report allocations per frame. Only the benchmark links it.
#ifndef MALLOC_COUNTER_H
#define MALLOC_COUNTER_H

/// Allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc) so far.
unsigned long malloc_counter_allocations(void);

#endif
