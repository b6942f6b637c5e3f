# Writes the bytes of IN as a C array NAME (NUL-terminated; NAME_len excludes the NUL) into
# OUT. Run as: cmake -DIN=... -DOUT=... -DNAME=... -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}.tmp"
     "/* generated from ${IN} by cmake/embed.cmake; do not edit */\n"
     "const unsigned char ${NAME}[] = {${bytes}0x00};\n"
     "const unsigned long ${NAME}_len = sizeof ${NAME} - 1;\n")
file(RENAME "${OUT}.tmp" "${OUT}")
