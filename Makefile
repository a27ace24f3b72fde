# Builds the module against the installed Debian nginx (nginx-dev), tests
# it, and runs a demo.  `make test` and `make demo` install what they need.

SHELL      := /bin/bash
NGINX_SRC  ?= /usr/share/nginx/src
NGINX      ?= /usr/sbin/nginx
BUILD      := build
MODULE     := $(BUILD)/ngx_http_kanka_oauth_module.so
SOURCES    := config $(wildcard ngx_http_kanka_oauth_module/*.[ch])
EXTRA_CFLAGS ?=

DEBS_BUILD := build-essential nginx-light nginx-dev libcurl4-openssl-dev \
              libyajl-dev libssl-dev
DEBS_TEST  := $(DEBS_BUILD) libio-socket-ssl-perl curl gdb

.PHONY: all deps deps-test test demo clean

all: $(MODULE)

# apt-get runs only when a package of the list is missing
install_missing = missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deps:
	@$(call install_missing,$(DEBS_BUILD))

deps-test:
	@$(call install_missing,$(DEBS_TEST))

# nginx's configure writes into the tree it runs in: use a copy
$(BUILD)/nginx/objs/Makefile: config
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	source $(BUILD)/nginx/conf_flags \
	&& cd $(BUILD)/nginx \
	&& ./configure "$${NGX_CONF_FLAGS[@]}" \
	   --with-cc-opt="-g -O2 -fstack-protector-strong $(EXTRA_CFLAGS)" \
	   --add-dynamic-module=$(CURDIR) > ../configure.log \
	|| { cat ../configure.log; exit 1; }

$(MODULE): $(BUILD)/nginx/objs/Makefile $(SOURCES)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_http_kanka_oauth_module.so $@

test: deps-test
	$(MAKE) all
	$(MAKE) fuzz-replay
	prove -r t/
	$(MAKE) test-asan

demo: deps-test
	$(MAKE) all
	./demo/run

clean:
	rm -rf $(BUILD)

# the parser fuzzers: `make fuzz FUZZ_SECONDS=600 -j2` runs each for that
# long; `make fuzz-replay` runs the committed corpus once
.PHONY: fuzz fuzz-replay

fuzz:
	$(MAKE) -C fuzz run

fuzz-replay:
	$(MAKE) -C fuzz replay

# The whole suite against the module built with AddressSanitizer and
# UndefinedBehaviorSanitizer, in a build directory of its own.  Debian's
# nginx is not instrumented: the harness preloads the sanitizer runtimes
# into nginx alone (KANKA_PRELOAD becomes its LD_PRELOAD), and fails a test
# on any report, which nginx's stderr carries into its error log.
.PHONY: test-asan

ASAN_BUILD  := build-asan
ASAN_MODULE := $(ASAN_BUILD)/ngx_http_kanka_oauth_module.so

# -fno-sanitize-recover=all: undefined behaviour ends the process, as a
#   memory error does, instead of being reported and run past;
#   -fno-omit-frame-pointer: whole stacks through the module's own frames
ASAN_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
               -fno-omit-frame-pointer

# abort_on_error=1: a report ends the worker with SIGABRT, which the master
#   logs as an alert ("exited on signal 6") rather than an exit code at
#   notice level
# detect_leaks=0: nginx frees nothing when "nginx -t" ends, and a worker
#   keeps its connection and event arrays until it exits; Debian's binary
#   has no frame pointers, so such a stack stops at ngx_alloc() and no
#   suppression could tell nginx's from the module's
# detect_stack_use_after_return=1: also catches a pointer to a function's
#   locals used after it returned (records are built in stack buffers)
# fast_unwind_on_malloc=0: Debian's nginx has no frame pointers, so the
#   fast unwinder stops at ngx_destroy_pool() or ngx_alloc(); the slow one
#   shows who freed or allocated the memory of a report, at little cost
# print_stacktrace=1: a stack with each UBSan report.  UBSan reads its
#   options at its first report; in a worker, nginx has written the process
#   title over the environment by then, so there the defaults apply, which
#   -fno-sanitize-recover=all makes fatal all the same (rerun the test with
#   "master_process off;" for the stack)
ASAN_ENV := ASAN_OPTIONS=abort_on_error=1:detect_leaks=0:detect_stack_use_after_return=1:fast_unwind_on_malloc=0 \
            UBSAN_OPTIONS=print_stacktrace=1

$(ASAN_BUILD)/nginx/objs/Makefile: config
	rm -rf $(ASAN_BUILD)/nginx
	mkdir -p $(ASAN_BUILD)
	cp -r $(NGINX_SRC) $(ASAN_BUILD)/nginx
	source $(ASAN_BUILD)/nginx/conf_flags \
	&& cd $(ASAN_BUILD)/nginx \
	&& ./configure "$${NGX_CONF_FLAGS[@]}" \
	   --with-cc-opt="-g -O1 $(ASAN_CFLAGS)" \
	   --with-ld-opt="-fsanitize=address,undefined" \
	   --add-dynamic-module=$(CURDIR) > ../configure.log \
	|| { cat ../configure.log; exit 1; }

$(ASAN_MODULE): $(ASAN_BUILD)/nginx/objs/Makefile $(SOURCES)
	$(MAKE) -C $(ASAN_BUILD)/nginx -f objs/Makefile modules
	cp $(ASAN_BUILD)/nginx/objs/ngx_http_kanka_oauth_module.so $@

test-asan: deps-test
	$(MAKE) $(ASAN_MODULE)
	KANKA_MODULE=$(CURDIR)/$(ASAN_MODULE) \
	KANKA_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	$(ASAN_ENV) prove -r t/

.PHONY: clean-asan

clean-asan:
	rm -rf $(ASAN_BUILD)

# benchmarks of the gate next to their baselines (wrk, callgrind); about
# 7 minutes, to run on a quiet machine.  `make bench BENCH_ARGS=--quick`
# for a short run; the table is also left in build/bench.md
.PHONY: bench deps-bench

DEBS_BENCH := $(DEBS_TEST) wrk valgrind

deps-bench:
	@$(call install_missing,$(DEBS_BENCH))

bench: deps-bench
	$(MAKE) all
	./bench/run --out $(BUILD)/bench.md $(BENCH_ARGS)
