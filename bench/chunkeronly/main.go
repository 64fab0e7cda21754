// Command chunkeronly is the baseline for bench/run.sh's single-file test:
// it reads one file and runs only content-defined chunking over it
// (github.com/restic/chunker, no hashing, compression or storing), then
// prints the elapsed wall time in seconds on stdout. Statistics go to stderr.
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/restic/chunker"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chunkeronly FILE")
		os.Exit(2)
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chunkeronly:", err)
		os.Exit(1)
	}
	buf := make([]byte, 8<<20)

	start := time.Now()
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chunkeronly:", err)
		os.Exit(1)
	}
	defer f.Close()
	c := chunker.New(f, pol)
	var chunks, total uint64
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "chunkeronly:", err)
			os.Exit(1)
		}
		chunks++
		total += uint64(ch.Length)
	}
	secs := time.Since(start).Seconds()

	fmt.Printf("%.3f\n", secs)
	fmt.Fprintf(os.Stderr, "chunkeronly: %d bytes, %d chunks, %.3fs, %.1f MB/s\n",
		total, chunks, secs, float64(total)/secs/1e6)
}
