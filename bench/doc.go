// Command bench measures xlb's dataplane against a kernel baseline.
package main
