# cachebust — PGXS build.
#
#   make && make install          build and install the extension
#   make installcheck             pg_regress on a temporary, preloaded instance
#   make unit                     GoogleTest suite of the pure core (src/core)
#   make unit-sanitize            the same under AddressSanitizer + UBSan
#   make fuzz FUZZ_SECONDS=N      bounded libFuzzer run of the template parser
#   make prove                    TAP integration tests (real PostgreSQL + Redis)
#   make bench                    benchmarks against the alternatives (bench/run.sh)
#   make deb                      the Debian package postgresql-15-cachebust_<version>-1_<arch>.deb
#   make dist                     cachebust-<version>.zip and .tar.gz (PGXN) from git archive
#
# The whole suite, with its dependencies, is test/run_all.sh (see README.md).

EXTENSION = cachebust
MODULE_big = cachebust
DATA = cachebust--0.1.0.sql cachebust--0.2.0.sql cachebust--0.3.0.sql \
	cachebust--0.1.0--0.2.0.sql cachebust--0.2.0--0.3.0.sql
PGFILEDESC = "cachebust - transactional Redis cache invalidation"

# The pure C++ core: no PostgreSQL headers, unit-tested on its own.
CORE_SRCS = \
	src/core/target.cpp \
	src/core/template.cpp \
	src/core/row_refresh.cpp \
	src/core/pending_set.cpp \
	src/core/target_set.cpp \
	src/core/seq_set.cpp \
	src/core/batch_codec.cpp \
	src/core/backoff.cpp \
	src/core/coalescer.cpp \
	src/core/latency_histogram.cpp \
	src/core/glob.cpp \
	src/core/key_slot.cpp \
	src/core/clear_tokens.cpp \
	src/core/redis/url.cpp \
	src/core/secret_text.cpp \
	src/core/redis/resp.cpp \
	src/core/redis/errors.cpp \
	src/core/redis/transport.cpp \
	src/core/redis/tls.cpp \
	src/core/redis/connection.cpp \
	src/core/delivery/tag_script.cpp \
	src/core/delivery/publish_message.cpp \
	src/core/delivery/lane.cpp \
	src/core/delivery/scan_pass.cpp \
	src/core/delivery/ask_in_turn.cpp \
	src/core/delivery/sentinel.cpp \
	src/core/delivery/cluster_map.cpp \
	src/core/delivery/engine.cpp \
	src/core/delivery/engine_cluster.cpp \
	src/core/delivery/failover_memory.cpp \
	src/core/delivery/fallback.cpp \
	src/core/delivery/refresh_waits.cpp \
	src/core/delivery/redelete_schedule.cpp \
	src/core/delivery/standby_sends.cpp \
	src/core/delivery/journal_backlog.cpp \
	src/core/delivery/dispatcher.cpp

# The PostgreSQL glue: GUCs, triggers, transaction hooks, shared memory, worker.
PG_SRCS = \
	src/pg/cachebust.cpp \
	src/pg/guard.cpp \
	src/pg/guc.cpp \
	src/pg/capture.cpp \
	src/pg/journal_wal.cpp \
	src/pg/journal_functions.cpp \
	src/pg/trigger.cpp \
	src/pg/sql_functions.cpp \
	src/pg/queue.cpp \
	src/pg/clear.cpp \
	src/pg/prefix_registry.cpp \
	src/pg/wait_set.cpp \
	src/pg/worker_state.cpp \
	src/pg/worker_stats.cpp \
	src/pg/standby_progress.cpp \
	src/pg/standby_follower.cpp \
	src/pg/engine_settings.cpp \
	src/pg/refresh_requests.cpp \
	src/pg/refresh_worker.cpp \
	src/pg/materialize.cpp \
	src/pg/worker.cpp \
	src/pg/worker_journal.cpp \
	src/pg/worker_standby.cpp \
	src/pg/worker_refresh.cpp

OBJS = $(CORE_SRCS:.cpp=.o) $(PG_SRCS:.cpp=.o)

REGRESS = setup templates transactions functions watch partitions errors privileges capture_modes materialize row_refresh
# pg_regress starts its own preloaded instance (test/regress.conf), unless
# REGRESS_INSTANCE=server: then it uses the running server PGHOST/PGPORT name,
# set up with the same settings (debian/tests/installcheck, for pg_buildext).
ifneq ($(REGRESS_INSTANCE),server)
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=./tmp_check
endif

PG_CPPFLAGS = -Isrc -isystem $(includedir_server)

# The one version number is the control file's default_version. The library
# reports it (cachebust.version()); test/check_release.py holds META.json,
# debian/changelog and the README's package name to it.
EXTVERSION := $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)
PG_CPPFLAGS += -DCACHEBUST_VERSION='"$(EXTVERSION)"'
# (-isystem: PostgreSQL headers are not -Wextra clean; the warnings are not ours.)
# -Wno-register: PostgreSQL headers still use `register`, removed in C++17.
PG_CXXFLAGS = -std=c++17 -fPIC -Wall -Wextra -Wno-register -Wno-missing-field-initializers
# Header dependencies: a changed struct in a header must rebuild every object
# that includes it (shared-memory layouts are read by several files).
PG_CXXFLAGS += -MMD -MP
SHLIB_LINK = -lhiredis -lssl -lcrypto -lstdc++

# LLVM bitcode is deliberately not built. PostgreSQL's JIT only uses it to
# inline functions into compiled expressions; our entry points are trigger and
# SQL functions reached through fmgr, so it would buy nothing, and PGXS's
# clang rule for C++ does not get our -std=c++17 flags.
override with_llvm = no

EXTRA_CLEAN = build tmp_check test/tmp_check results regression.diffs regression.out log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

-include $(OBJS:.o=.d)
# A new version in the control file must reach the library that reports it.
src/pg/sql_functions.o: $(EXTENSION).control
EXTRA_CLEAN += $(OBJS:.o=.d)

# ---- tests of the pure core (no server needed) -------------------------

GTEST_LIBS = -lgtest -lgtest_main -lhiredis -lssl -lcrypto -pthread
UNIT_SRCS = $(wildcard test/unit/*.cpp)
UNIT_CXXFLAGS = -std=c++17 -Wall -Wextra -g -O1 -Isrc -Itest/unit

build/unit/unit_tests: $(CORE_SRCS) $(UNIT_SRCS) $(wildcard src/core/*.hpp src/core/*/*.hpp test/unit/*.hpp)
	@mkdir -p $(dir $@)
	$(CXX) $(UNIT_CXXFLAGS) -o $@ $(CORE_SRCS) $(UNIT_SRCS) $(GTEST_LIBS)

build/unit-sanitize/unit_tests: $(CORE_SRCS) $(UNIT_SRCS) $(wildcard src/core/*.hpp src/core/*/*.hpp test/unit/*.hpp)
	@mkdir -p $(dir $@)
	$(CXX) $(UNIT_CXXFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -o $@ $(CORE_SRCS) $(UNIT_SRCS) $(GTEST_LIBS)

unit: build/unit/unit_tests
	$<

unit-sanitize: build/unit-sanitize/unit_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $<

# ---- fuzzing ------------------------------------------------------------
#
# Each target gets FUZZ_SECONDS: the template parser, the glob matcher
# (against a reference matcher) and the cluster key slot (against a bitwise
# CRC16).

FUZZ_SECONDS ?= 20
FUZZ_CXX = clang++ -std=c++17 -g -O1 -Isrc -fsanitize=fuzzer,address,undefined

build/fuzz/template_fuzz: test/fuzz/template_fuzz.cpp src/core/target.cpp src/core/template.cpp src/core/template.hpp src/core/target.hpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -o $@ test/fuzz/template_fuzz.cpp src/core/target.cpp src/core/template.cpp

build/fuzz/glob_fuzz: test/fuzz/glob_fuzz.cpp src/core/glob.cpp src/core/glob.hpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -o $@ test/fuzz/glob_fuzz.cpp src/core/glob.cpp

build/fuzz/key_slot_fuzz: test/fuzz/key_slot_fuzz.cpp src/core/key_slot.cpp src/core/key_slot.hpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -o $@ test/fuzz/key_slot_fuzz.cpp src/core/key_slot.cpp

fuzz: build/fuzz/template_fuzz build/fuzz/glob_fuzz build/fuzz/key_slot_fuzz
	@mkdir -p build/fuzz/corpus build/fuzz/glob_corpus build/fuzz/slot_corpus
	build/fuzz/template_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=256 build/fuzz/corpus test/fuzz/seeds
	build/fuzz/glob_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=128 build/fuzz/glob_corpus test/fuzz/glob_seeds
	build/fuzz/key_slot_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=256 build/fuzz/slot_corpus

# ---- integration tests ----------------------------------------------------

PROVE_TESTS ?= test/t/*.pl
prove:
	PATH="$(bindir):$$PATH" PG_REGRESS="$(top_builddir)/src/test/regress/pg_regress" \
		prove -I $(pgxsdir)/src/test/perl -I test/t $(PROVE_FLAGS) $(PROVE_TESTS)

# ---- release: Debian package, PGXN archives --------------------------------
#
# deb: debian/ (PGDG layout) built by dpkg-buildpackage in build/deb, on a
# copy of the tracked and new files, so that this tree's own build is left
# alone (pg_buildext cleans the tree it builds in). Build dependencies:
# test/install_deps.sh. DEB_BUILD_OPTIONS=nocheck skips the build-time
# pg_regress run.
DEB_JOBS ?= $(shell nproc)
deb:
	rm -rf build/deb && mkdir -p build/deb/cachebust
	git ls-files -z --cached --others --exclude-standard | \
		tar --null -T - --ignore-failed-read -c | tar -x -C build/deb/cachebust
	cd build/deb/cachebust && dpkg-buildpackage -us -uc -b -j$(DEB_JOBS)
	cp build/deb/postgresql-*-cachebust_*.deb .

# dist: what building, installing and `make installcheck` need, from git
# archive of HEAD (committed files only; .gitattributes lists what stays out).
DIST = $(EXTENSION)-$(EXTVERSION)
dist:
	@git diff --quiet HEAD -- || echo "make dist: uncommitted changes are not in the archives" >&2
	git archive --format=tar.gz --prefix=$(DIST)/ -o $(DIST).tar.gz HEAD
	git archive --format=zip --prefix=$(DIST)/ -o $(DIST).zip HEAD

# ---- benchmarks (installs its own dependencies; results in bench/results/) ----

bench:
	bash bench/run.sh

.PHONY: unit unit-sanitize fuzz prove bench deb dist
