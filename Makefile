# The two README commands. Everything else lives in CMake (see CMakeLists.txt).
#   make run   - install what is missing, build, run the demo
#   make test  - install what is missing, build, run every test
# and the install pair (docs/install.md):
#   make install   [PREFIX=/usr/local] [DESTDIR=] [BUILD=build] [NOBUILD=1]
#   make uninstall [PREFIX=/usr/local] [DESTDIR=]
BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=

# Installed files (make uninstall removes exactly these).
BIN_DST  = $(DESTDIR)$(PREFIX)/bin/linkup
BASH_DST = $(DESTDIR)$(PREFIX)/share/bash-completion/completions/linkup
ZSH_DST  = $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_linkup
FISH_DST = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/linkup.fish
MAN_DST  = $(DESTDIR)$(PREFIX)/share/man/man1/linkup.1

# Generated from the built binary, inside the build dir (never the source
# tree). The binary runs with a private LINKUP_HOME and no config, so no
# user's service names end up in the completions.
GEN = $(BUILD)/install
GEN_ENV = env -u LINKUP_CONFIG LINKUP_HOME=$(abspath $(GEN))/home LINKUP_NO_UPDATE_CHECK=1

.PHONY: all build deps run test asan bench check-format check-layering clean install uninstall \
	install-bin

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) >/dev/null
	@cmake --build $(BUILD) -j $$(nproc)

run: deps
	@cmake -S . -B $(BUILD) >/dev/null
	@cmake --build $(BUILD) -j $$(nproc) --target linkup >/dev/null
	@scripts/run.sh

test: deps
	@scripts/test.sh $(BUILD)

asan: deps
	@LK_CC=clang LK_SANITIZE=1 scripts/test.sh build-asan

bench:
	@bench/run.sh

check-format:
	@scripts/check.sh format

check-layering:
	@scripts/check.sh layering

clean:
	rm -rf $(BUILD) build-asan build-fuzz

# Brings $(BUILD)/linkup up to date (packages, then an incremental cmake
# build), or with NOBUILD=1 only insists that it exists: packaging and the
# tests install what is there without touching packages or the build tree.
ifeq ($(NOBUILD),1)
install-bin:
	@test -x $(BUILD)/linkup || { echo "make install: $(BUILD)/linkup is missing (run make first)" >&2; exit 1; }
else
install-bin: deps
	@cmake -S . -B $(BUILD) >/dev/null
	@cmake --build $(BUILD) -j $$(nproc) --target linkup
endif

$(GEN)/linkup.1: $(BUILD)/linkup
	@command -v help2man >/dev/null || { echo "make install: help2man is missing (scripts/deps.sh installs it)" >&2; exit 1; }
	@mkdir -p $(GEN)/home
	@$(GEN_ENV) help2man --no-info --output=$@.tmp \
		--name="connect remote and local dev/preview environments" $(abspath $(BUILD))/linkup
	@mv $@.tmp $@

$(GEN)/linkup.bash: $(BUILD)/linkup
	@mkdir -p $(GEN)/home
	@$(GEN_ENV) $(BUILD)/linkup completion --shell bash >$@.tmp && mv $@.tmp $@

$(GEN)/_linkup: $(BUILD)/linkup
	@mkdir -p $(GEN)/home
	@$(GEN_ENV) $(BUILD)/linkup completion --shell zsh >$@.tmp && mv $@.tmp $@

$(GEN)/linkup.fish: $(BUILD)/linkup
	@mkdir -p $(GEN)/home
	@$(GEN_ENV) $(BUILD)/linkup completion --shell fish >$@.tmp && mv $@.tmp $@

# The generated files are made in a sub-make, after install-bin, so they see
# the binary this run built.
install: install-bin
	@$(MAKE) --no-print-directory install-files

.PHONY: install-files
install-files: $(GEN)/linkup.1 $(GEN)/linkup.bash $(GEN)/_linkup $(GEN)/linkup.fish
	install -d $(dir $(BIN_DST)) $(dir $(BASH_DST)) $(dir $(ZSH_DST)) $(dir $(FISH_DST)) \
		$(dir $(MAN_DST))
	install -m 0755 $(BUILD)/linkup $(BIN_DST)
	install -m 0644 $(GEN)/linkup.bash $(BASH_DST)
	install -m 0644 $(GEN)/_linkup $(ZSH_DST)
	install -m 0644 $(GEN)/linkup.fish $(FISH_DST)
	install -m 0644 $(GEN)/linkup.1 $(MAN_DST)
	@if [ -z "$(DESTDIR)" ] && [ "$$(uname -s)" = Linux ]; then \
		echo "To let linkup bind ports 80/443 without root: sudo setcap cap_net_bind_service=+ep $(BIN_DST)"; fi

uninstall:
	rm -f $(BIN_DST) $(BASH_DST) $(ZSH_DST) $(FISH_DST) $(MAN_DST)
