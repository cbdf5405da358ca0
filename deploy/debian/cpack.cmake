# CPACK_PROJECT_CONFIG_FILE of patterntrack's package (CMakeLists.txt): read by cpack, once per
# generator. The latest entry of deploy/debian/changelog must name the version being packaged,
# or the package's changelog.Debian.gz would describe another one.
if(CPACK_GENERATOR STREQUAL "DEB")
  file(READ "${CPACK_PT_CHANGELOG}" pt_head LIMIT 200)
  string(REGEX MATCH "^[^\n]*" pt_first "${pt_head}")
  set(pt_want "${CPACK_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
  string(REPLACE "." "\\." pt_re "${pt_want}")
  if(NOT pt_first MATCHES "^patterntrack \\(${pt_re}\\) ")
    message(FATAL_ERROR "deploy/debian/changelog: the latest entry is '${pt_first}', not version "
                        "${pt_want}: add an entry for it (dch -v ${pt_want}) first")
  endif()
endif()
