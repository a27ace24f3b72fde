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

# apt-get runs only when a package is missing
deps:
	@missing=$$(for p in $(DEBS_BUILD); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deps-test:
	@missing=$$(for p in $(DEBS_TEST); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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
