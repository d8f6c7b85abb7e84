//! Where everything lives in the STM32H573IIK3Q's 2 MB of internal flash and on the kit's
//! 64 MB Octo-SPI NOR, and the map the stores run on ([`FLASH_MAP`]): plain constants and
//! `const fn`s over them, so that they build and are tested on the host
//! (`cargo test -p homemx-bsp-stm32h573i-dk`) as well as checked at compile time for the chip.
//!
//! Internal flash (the key flash; every sector 8 KiB, RM0481: two banks of 128 sectors; the
//! chip programs 16-byte quad-words with ECC, each once per erase):
//!
//! | range | bank / sectors | size | use |
//! | --- | --- | --- | --- |
//! | `0x0800_0000..0x0810_0000` | bank 1, sectors 0–127 | 1 MiB | firmware image (`memory.x` FLASH) |
//! | `0x0810_0000..0x0810_4000` | bank 2, sectors 0–1 | 16 KiB | reserved for the board (boot state); not touched |
//! | `0x0810_4000..0x0810_8000` | bank 2, sectors 2–3 | 16 KiB | the key store (the key flash, `DataPartition`) |
//! | `0x0810_8000..0x0820_0000` | bank 2, sectors 4–127 | 992 KiB | in the key flash's partition, unused |
//!
//! Octo-SPI NOR (MX25LM51245G, the data flash, 4 KiB sectors, `octo_spi_nor`):
//!
//! | range | sectors | size | use |
//! | --- | --- | --- | --- |
//! | `0x000_0000..0x004_0000` | 0–63 | 256 KiB | the key-value store |
//! | `0x004_0000..0x014_0000` | 64–319 | 1 MiB | the spool |
//! | `0x014_0000..0x400_0000` | 320–16383 | 62.75 MiB | unused |
//!
//! The spool's size is set by RAM, not by the NOR: the spool keeps 5 bytes of RAM per sector
//! (its sector table, `homemx-spool`), so the whole NOR would cost 80 KB, and this board's
//! stack already has less than twice its high-water mark (README, "Not done"). 256 sectors
//! (1 MiB, 1.3 KB of RAM) hold more than the 728 KiB the spool had in the internal flash; more
//! is the one constant `spool_sectors` once RAM allows (4 MiB: 5 KB). What the move gains now
//! is the NOR's endurance (100,000 cycles per sector against the internal flash's 10,000) and
//! 992 KiB of bank 2 no longer used. The driver's range checks and page splitting are here, so
//! that the host tests them.
//!
//! Owns: nothing (constants). Calls: `homemx_board::FlashMap`'s checks.

use homemx_board::FlashMap;

/// Address of the chip's internal flash (bank 1, sector 0).
pub const FLASH_START_ADDRESS: u32 = 0x0800_0000;
/// Size of one bank (128 sectors).
pub const BANK_SIZE: u32 = 1024 * 1024;
/// Address of bank 2 (its sector 0), with the banks not swapped (option byte `SWAP_BANK` clear).
pub const BANK_2_START_ADDRESS: u32 = FLASH_START_ADDRESS + BANK_SIZE;
/// Erase unit of the internal flash in both banks.
pub const SECTOR_SIZE: u32 = 8 * 1024;
/// Program unit of the internal flash: one 128-bit quad-word (with its ECC).
pub const WORD_SIZE: usize = 16;
/// Sectors of bank 2 kept back for the board, before the data partition.
pub const BOARD_RESERVED_SECTORS: u32 = 2;
/// First address of the data partition.
pub const PARTITION_START_ADDRESS: u32 = BANK_2_START_ADDRESS + BOARD_RESERVED_SECTORS * SECTOR_SIZE;
/// One past the last address of the data partition: the end of bank 2.
pub const PARTITION_END_ADDRESS: u32 = BANK_2_START_ADDRESS + BANK_SIZE;
/// Size of the data partition in bytes (1008 KiB, 126 sectors).
pub const PARTITION_SIZE: u32 = PARTITION_END_ADDRESS - PARTITION_START_ADDRESS;
/// The image's room in `memory.x`: all of bank 1 (the budget is 1 MB, `budgets.toml`).
pub const IMAGE_SIZE: u32 = BANK_SIZE;

/// Size of the Octo-SPI NOR (MX25LM51245G: 512 Mbit).
pub const OCTO_SPI_NOR_SIZE: u32 = 64 * 1024 * 1024;
/// Erase unit of the Octo-SPI NOR (its 4 KiB sector erase).
pub const OCTO_SPI_NOR_SECTOR_SIZE: u32 = 4 * 1024;
/// Program unit the Octo-SPI NOR driver offers the stores (the memory programs single bytes).
pub const OCTO_SPI_NOR_WORD_SIZE: usize = 4;

/// The stores: the key store in two 8 KiB sectors of the internal flash (its record moves
/// between two slots); on the Octo-SPI NOR, 64 sectors of 4 KiB for the key-value store
/// (256 KiB, as on the QEMU board) and 256 for the spool (1 MiB; one sector of it is the
/// spool's spare; its size is set by RAM, see the module documentation).
pub const FLASH_MAP: FlashMap = FlashMap {
    key_sector_size: SECTOR_SIZE,
    key_store_sectors: 2,
    sector_size: OCTO_SPI_NOR_SECTOR_SIZE,
    key_value_sectors: 64,
    spool_sectors: 256,
};

/// Program page of the Octo-SPI NOR: one page program writes at most up to the end of its page.
pub const OCTO_SPI_NOR_PAGE_SIZE: u32 = 256;

/// Why a range of the Octo-SPI NOR was refused before the memory was touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The address or length is not a multiple of the operation's unit.
    NotAligned,
    /// The range runs past the end of the memory.
    OutOfBounds,
}

/// Checks that `offset..offset + length` lies in the Octo-SPI NOR and both ends are multiples
/// of `alignment`.
pub const fn check_octo_spi_nor_range(offset: u32, length: u32, alignment: u32) -> Result<(), RangeError> {
    if !offset.is_multiple_of(alignment) || !length.is_multiple_of(alignment) {
        return Err(RangeError::NotAligned);
    }
    match offset.checked_add(length) {
        Some(end) if end <= OCTO_SPI_NOR_SIZE => Ok(()),
        _ => Err(RangeError::OutOfBounds),
    }
}

/// How many of `remaining` bytes written from `offset` one page program takes: up to the end of
/// `offset`'s page.
pub const fn octo_spi_nor_page_chunk(offset: u32, remaining: u32) -> u32 {
    let room = OCTO_SPI_NOR_PAGE_SIZE - offset % OCTO_SPI_NOR_PAGE_SIZE;
    if room < remaining {
        room
    } else {
        remaining
    }
}

/// Whether the internal-flash layout holds together: the image and the partition do not
/// overlap, the partition is whole sectors and ends at the end of the chip, and the map fits
/// the partition and passes the stores' checks.
pub const fn internal_layout_is_consistent() -> bool {
    FLASH_START_ADDRESS + IMAGE_SIZE <= BANK_2_START_ADDRESS
        && PARTITION_START_ADDRESS >= BANK_2_START_ADDRESS
        && PARTITION_START_ADDRESS.is_multiple_of(SECTOR_SIZE)
        && PARTITION_SIZE.is_multiple_of(SECTOR_SIZE)
        && PARTITION_END_ADDRESS == FLASH_START_ADDRESS + 2 * BANK_SIZE
        && FLASH_MAP.key_sector_size == SECTOR_SIZE
        && FLASH_MAP.key_store_bytes() <= PARTITION_SIZE
        && FLASH_MAP.is_consistent()
}

/// Whether the stores on the Octo-SPI NOR fit it, in its sectors.
pub const fn octo_spi_layout_is_consistent() -> bool {
    FLASH_MAP.sector_size == OCTO_SPI_NOR_SECTOR_SIZE && FLASH_MAP.data_bytes() <= OCTO_SPI_NOR_SIZE && FLASH_MAP.is_consistent()
}

const _: () = assert!(internal_layout_is_consistent(), "the internal flash map does not hold together");
const _: () = assert!(octo_spi_layout_is_consistent(), "the Octo-SPI NOR map does not hold together");

/// The chip's bank and sector (0–127 within the bank) of a partition offset; `None` past the end.
pub const fn bank_and_sector(partition_offset: u32) -> Option<(u8, u32)> {
    if partition_offset >= PARTITION_SIZE {
        return None;
    }
    let from_flash_start = PARTITION_START_ADDRESS - FLASH_START_ADDRESS + partition_offset;
    Some(((from_flash_start / BANK_SIZE) as u8 + 1, (from_flash_start % BANK_SIZE) / SECTOR_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_is_bank_2_after_the_reserved_sectors() {
        assert_eq!(PARTITION_START_ADDRESS, 0x0810_4000);
        assert_eq!(PARTITION_END_ADDRESS, 0x0820_0000);
        assert_eq!(PARTITION_SIZE, 126 * 8192);
        assert_eq!(bank_and_sector(0), Some((2, 2)));
        assert_eq!(bank_and_sector(SECTOR_SIZE - 1), Some((2, 2)));
        assert_eq!(bank_and_sector(SECTOR_SIZE), Some((2, 3)));
        assert_eq!(bank_and_sector(PARTITION_SIZE - 1), Some((2, 127)));
        assert_eq!(bank_and_sector(PARTITION_SIZE), None);
    }

    #[test]
    fn the_key_store_takes_two_8_kib_sectors_of_the_internal_flash() {
        assert!(internal_layout_is_consistent());
        assert_eq!(FLASH_MAP.key_sector_size, 8192);
        assert_eq!(FLASH_MAP.key_store_bytes(), 2 * 8192);
        assert_eq!(bank_and_sector(FLASH_MAP.key_store_bytes() - 1), Some((2, 3)), "bank 2, sectors 2 and 3");
        // A key store of one sector has nowhere to move its record.
        assert!(!FlashMap { key_store_sectors: 1, ..FLASH_MAP }.is_consistent());
    }

    #[test]
    fn the_key_value_store_and_the_spool_take_4_kib_sectors_of_the_octo_spi_nor() {
        assert!(octo_spi_layout_is_consistent());
        assert_eq!(FLASH_MAP.sector_size, 4096);
        assert_eq!(FLASH_MAP.key_value_sectors * 4096, 256 * 1024);
        assert_eq!(FLASH_MAP.spool_sectors * 4096, 1024 * 1024);
        assert_eq!(FLASH_MAP.data_bytes(), 0x14_0000);
        assert!(FLASH_MAP.data_bytes() <= OCTO_SPI_NOR_SIZE);
        // Mail beside the spare sector: more than the 728 KiB the internal flash gave it.
        assert!(u64::from(FLASH_MAP.spool_sectors - 1) * 4096 > 728 * 1024);
    }

    #[test]
    fn octo_spi_nor_ranges_are_checked_before_the_memory_is_touched() {
        assert_eq!(check_octo_spi_nor_range(0, OCTO_SPI_NOR_SIZE, OCTO_SPI_NOR_SECTOR_SIZE), Ok(()));
        assert_eq!(check_octo_spi_nor_range(4096, 4096, 4096), Ok(()));
        assert_eq!(check_octo_spi_nor_range(2048, 4096, 4096), Err(RangeError::NotAligned));
        assert_eq!(check_octo_spi_nor_range(4096, 6, 4), Err(RangeError::NotAligned));
        assert_eq!(check_octo_spi_nor_range(OCTO_SPI_NOR_SIZE - 4, 8, 4), Err(RangeError::OutOfBounds));
        assert_eq!(check_octo_spi_nor_range(u32::MAX - 3, 8, 4), Err(RangeError::OutOfBounds), "no wrap-around");
    }

    #[test]
    fn octo_spi_nor_writes_split_at_page_ends_and_cover_every_byte_once() {
        assert_eq!(octo_spi_nor_page_chunk(0, 1000), 256);
        assert_eq!(octo_spi_nor_page_chunk(252, 8), 4);
        assert_eq!(octo_spi_nor_page_chunk(256, 8), 8);
        for (start, length) in [(0u32, 1u32), (4, 1020), (252, 8), (1000, 5000), (65_532, 4)] {
            let (mut offset, mut remaining, mut chunks) = (start, length, 0);
            while remaining > 0 {
                let chunk = octo_spi_nor_page_chunk(offset, remaining);
                assert!(chunk > 0 && chunk <= OCTO_SPI_NOR_PAGE_SIZE);
                assert_eq!(offset / OCTO_SPI_NOR_PAGE_SIZE, (offset + chunk - 1) / OCTO_SPI_NOR_PAGE_SIZE, "one page per program");
                offset += chunk;
                remaining -= chunk;
                chunks += 1;
            }
            assert_eq!(offset, start + length);
            assert!(chunks <= length.div_ceil(OCTO_SPI_NOR_PAGE_SIZE) + 1);
        }
    }
}
